// What AUTH_MODE=jwt checks at start; the JWTs themselves are tried on both stores in test/contract/access.test.ts.
import { afterAll, describe, expect, test } from 'bun:test';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp } from '../../src/app';
import { type Config, ConfigError } from '../../src/config';
import { defaultConfig } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'switchboard-jwt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function jwtApp(config: Partial<Config>) {
  return createApp(defaultConfig({ authMode: 'jwt', ...config })).app;
}

describe('AUTH_MODE=jwt with a key file', () => {
  test('a key file that cannot be used stops the server at start, naming the setting', () => {
    const bad = join(dir, 'bad.pem');
    writeFileSync(bad, 'not a key');
    expect(() => jwtApp({ jwtPublicKeyFile: bad })).toThrow(ConfigError);
    expect(() => jwtApp({ jwtPublicKeyFile: bad })).toThrow(/JWT_PUBLIC_KEY_FILE/);
    expect(() => jwtApp({ jwtJwksFile: join(dir, 'missing.json') })).toThrow(/JWT_JWKS_FILE/);
    const ed = join(dir, 'ed.pem');
    writeFileSync(ed, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }) as string);
    expect(() => jwtApp({ jwtPublicKeyFile: ed })).toThrow(/neither an RSA nor a P-256/);
  });
});
