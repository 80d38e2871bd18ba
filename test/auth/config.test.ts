import { describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../src/config';
import { runToEnd } from '../process-helpers';

const failure = (env: Record<string, string>) => {
  try {
    loadConfig([], env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
};
const config = (env: Record<string, string>) => {
  const command = loadConfig([], env);
  if (command.kind !== 'run') throw new Error('expected a run command');
  return command.config;
};

describe('access settings', () => {
  test('AUTH_MODE is open unless set, and names its choices when wrong', () => {
    expect(config({}).authMode).toBe('open');
    expect(config({ AUTH_MODE: 'token' }).authMode).toBe('token');
    expect(failure({ AUTH_MODE: 'jwts' })).toBe('AUTH_MODE="jwts" is invalid: Expected one of open, token, jwt');
  });

  test('jwt mode needs exactly one key source', () => {
    expect(failure({ AUTH_MODE: 'jwt' })).toMatch(/exactly one of JWT_SECRET, JWT_PUBLIC_KEY_FILE, JWT_JWKS_FILE/);
    expect(failure({ AUTH_MODE: 'jwt', JWT_SECRET: 'x'.repeat(32), JWT_JWKS_FILE: '/k.json' })).toMatch(/got JWT_SECRET, JWT_JWKS_FILE/);
    expect(config({ AUTH_MODE: 'jwt', JWT_SECRET: 'x'.repeat(32) }).jwtSecret).toBe('x'.repeat(32));
  });

  test('a JWT key outside jwt mode is a mistake worth stopping for', () => {
    expect(failure({ JWT_SECRET: 'x'.repeat(32) })).toMatch(/only used with AUTH_MODE=jwt/);
  });

  test('short secrets are refused', () => {
    expect(failure({ AUTH_MODE: 'jwt', JWT_SECRET: 'short' })).toMatch(/^JWT_SECRET/);
    expect(failure({ ADMIN_TOKEN: 'short' })).toMatch(/^ADMIN_TOKEN/);
  });

  test('notifications are always signed', () => {
    expect(failure({ NOTIFY_URL: 'https://backend.example/hook' })).toMatch(/NOTIFY_URL and NOTIFY_SECRET/);
    expect(failure({ NOTIFY_URL: 'ftp://x', NOTIFY_SECRET: 's'.repeat(16) })).toMatch(/^NOTIFY_URL/);
  });

  test('limits read as whole numbers; 0 turns a rate off', () => {
    const c = config({ REGISTER_RATE_PER_MIN: '0', MAX_STREAMS_PER_IP: '3', TRUST_PROXY: '1' });
    expect([c.registerRatePerMin, c.maxStreamsPerIp, c.trustProxy]).toEqual([0, 3, 1]);
    expect(failure({ TRUST_PROXY: 'true' })).toMatch(/^TRUST_PROXY="true" is invalid/);
  });
});

describe('the server process', () => {
  test('a JWT key file that cannot be read stops it at start, exit 1, naming the setting', async () => {
    const entry = join(import.meta.dir, '..', '..', 'src', 'index.ts');
    const { code, output } = await runToEnd([process.execPath, entry], { HOST: '127.0.0.1', PORT: '0', AUTH_MODE: 'jwt', JWT_PUBLIC_KEY_FILE: '/nonexistent/key.pem' });
    expect(code).toBe(1);
    expect(output).toContain('JWT_PUBLIC_KEY_FILE=/nonexistent/key.pem cannot be used');
  });
});
