import { afterAll, describe, expect, test } from 'bun:test';
import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, SignJWT, UnsecuredJWT } from 'jose';
import { createApp } from '../../src/app';
import { type Config, ConfigError } from '../../src/config';
import { defaultConfig, ManualClock, req } from '../helpers';

const dir = mkdtempSync(join(tmpdir(), 'switchboard-jwt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SECRET = 'a-shared-secret-of-at-least-32-chars!';
const clock = new ManualClock();
const nowS = () => Math.floor(clock.now() / 1000);
const claims = (overrides: Record<string, unknown> = {}) => ({ session: 's1', peer: 'dashcam-7', role: 'publisher', exp: nowS() + 600, ...overrides });
const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string;
const rsaFile = join(dir, 'rsa.pem');
writeFileSync(rsaFile, rsaPem);
const ecFile = join(dir, 'ec.pem');
writeFileSync(ecFile, ec.publicKey.export({ type: 'spki', format: 'pem' }) as string);
const jwksFile = join(dir, 'jwks.json');
writeFileSync(
  jwksFile,
  JSON.stringify({
    keys: [
      { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256' },
      { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256' },
    ],
  }),
);

const hs = (payload: object) => new SignJWT({ ...payload }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET));
const signed = (key: KeyObject, alg: string, payload: object, kid?: string) => new SignJWT({ ...payload }).setProtectedHeader({ alg, kid }).sign(key);
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function jwtApp(config: Partial<Config> = { jwtSecret: SECRET }) {
  return createApp(defaultConfig({ authMode: 'jwt', ...config }), { clock }).app;
}

async function expectRefused(app: ReturnType<typeof jwtApp>, path: string, token: string | undefined, status: number, message: RegExp) {
  const res = await req(app, 'POST', path, undefined, token === undefined ? {} : bearer(token));
  expect(res.status).toBe(status);
  expect(res.body.error).toBe(status === 401 ? 'unauthorized' : 'forbidden');
  expect(res.body.message).toMatch(message);
}

describe('AUTH_MODE=jwt with JWT_SECRET (HS256)', () => {
  test('a valid JWT admits the peer it names, with its role; the peer token then guards the rest', async () => {
    const app = jwtApp();
    const res = await req(app, 'POST', '/register/s1/dashcam-7', undefined, bearer(await hs(claims())));
    expect(res.status).toBe(200);
    expect(res.body.role).toBe('publisher');
    const viewer = await req(app, 'POST', '/register/s1/viewer-1', undefined, bearer(await hs(claims({ peer: 'viewer-1', role: 'viewer' }))));
    expect(viewer.body.role).toBe('viewer');
    const offer = { type: 'offer', target: 'viewer-1' };
    expect((await req(app, 'POST', '/message/s1/dashcam-7', offer, bearer(res.body.token))).status).toBe(202);
    expect((await req(app, 'POST', '/message/s1/dashcam-7', offer)).status).toBe(401);
    // The JWT is for registering; it is not the peer token.
    expect((await req(app, 'POST', '/message/s1/dashcam-7', offer, bearer(await hs(claims())))).status).toBe(403);
    expect((await req(app, 'DELETE', '/session/s1', undefined, bearer(viewer.body.token))).status).toBe(403);
    expect((await req(app, 'DELETE', '/session/s1', undefined, bearer(res.body.token))).status).toBe(200);
  });

  test('"session": "*" admits the peer to any session', async () => {
    const app = jwtApp();
    const token = await hs(claims({ session: '*' }));
    expect((await req(app, 'POST', '/register/anything/dashcam-7', undefined, bearer(token))).status).toBe(200);
    expect((await req(app, 'POST', '/register/else/dashcam-7', undefined, bearer(token))).status).toBe(200);
  });

  test('a fresh JWT for the same peer takes its id over (a rebooted device); one for another peer cannot', async () => {
    const app = jwtApp();
    expect((await req(app, 'POST', '/register/s1/dashcam-7', undefined, bearer(await hs(claims())))).status).toBe(200);
    expect((await req(app, 'POST', '/register/s1/dashcam-7', undefined, bearer(await hs(claims())))).status).toBe(200);
    await expectRefused(app, '/register/s1/dashcam-7', await hs(claims({ peer: 'intruder' })), 403, /admits peer intruder, not dashcam-7/);
  });

  test.each([
    ['no Authorization header', undefined, 401, /needs a JWT from your backend/],
    ['a JWT for another session', claims({ session: 's2' }), 403, /admits to session s2, not s1/],
    ['a JWT for another peer', claims({ peer: 'someone-else' }), 403, /admits peer someone-else, not dashcam-7/],
    ['a JWT without exp', claims({ exp: undefined }), 401, /no "exp" claim/],
    ['an expired JWT', claims({ exp: nowS() - 60 }), 401, /has expired/],
    ['a JWT not valid yet', claims({ nbf: nowS() + 600 }), 401, /"nbf" claim/],
    ['a JWT without role', claims({ role: undefined }), 401, /"role" claim/],
    ['a JWT with an unknown role', claims({ role: 'admin' }), 401, /"role" claim/],
    ['a JWT without session', claims({ session: undefined }), 401, /"session" claim/],
    ['a JWT whose peer is not a valid id', claims({ peer: 'a\nb' }), 401, /"peer" claim/],
  ])('refuses %s', async (_, payload, status, message) => {
    await expectRefused(jwtApp(), '/register/s1/dashcam-7', payload === undefined ? undefined : await hs(payload), status, message);
  });

  test('refuses a JWT signed with another secret', async () => {
    const forged = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('another-secret-that-is-long-enough!!'));
    await expectRefused(jwtApp(), '/register/s1/dashcam-7', forged, 401, /signature does not match/);
  });

  test('refuses alg "none"', async () => {
    const unsigned = new UnsecuredJWT(claims()).encode();
    await expectRefused(jwtApp(), '/register/s1/dashcam-7', unsigned, 401, /signed with "none"; this server accepts only HS256/);
  });

  test('refuses a tampered payload', async () => {
    const [header, , signature] = (await hs(claims())).split('.');
    await expectRefused(jwtApp(), '/register/s1/dashcam-7', `${header}.${b64(claims({ peer: 'dashcam-7', role: 'publisher', session: '*' }))}.${signature}`, 401, /signature/);
  });

  test.each([['garbage'], ['a.b.c'], ['x'.repeat(9000)]])('refuses a credential that is no JWT: %#', async (token) => {
    const res = await req(jwtApp(), 'POST', '/register/s1/dashcam-7', undefined, bearer(token));
    expect(res.status).toBe(401);
  });

  test('JWT_ISSUER and JWT_AUDIENCE, when set, must match', async () => {
    const app = jwtApp({ jwtSecret: SECRET, jwtIssuer: 'https://backend.example', jwtAudience: 'switchboard' });
    await expectRefused(app, '/register/s1/dashcam-7', await hs(claims()), 401, /"iss" claim/);
    await expectRefused(app, '/register/s1/dashcam-7', await hs(claims({ iss: 'https://backend.example' })), 401, /"aud" claim/);
    const ok = await hs(claims({ iss: 'https://backend.example', aud: 'switchboard' }));
    expect((await req(app, 'POST', '/register/s1/dashcam-7', undefined, bearer(ok))).status).toBe(200);
  });
});

describe('AUTH_MODE=jwt with a public key', () => {
  test('JWT_PUBLIC_KEY_FILE with an RSA key: RS256 passes, anything else is refused', async () => {
    const app = jwtApp({ jwtPublicKeyFile: rsaFile });
    expect((await req(app, 'POST', '/register/s1/dashcam-7', undefined, bearer(await signed(rsa.privateKey, 'RS256', claims())))).status).toBe(200);
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    await expectRefused(app, '/register/s1/dashcam-7', await signed(other, 'RS256', claims()), 401, /signature does not match/);
    await expectRefused(app, '/register/s1/dashcam-7', new UnsecuredJWT(claims()).encode(), 401, /"none"; this server accepts only RS256/);
  });

  test('HS/RS confusion: a JWT MACed with the public key as an HS256 secret is refused', async () => {
    const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims())}`;
    const confused = `${body}.${createHmac('sha256', rsaPem).update(body).digest('base64url')}`;
    await expectRefused(jwtApp({ jwtPublicKeyFile: rsaFile }), '/register/s1/dashcam-7', confused, 401, /signed with "HS256"; this server accepts only RS256/);
  });

  test('JWT_PUBLIC_KEY_FILE with a P-256 key: ES256', async () => {
    const app = jwtApp({ jwtPublicKeyFile: ecFile });
    expect((await req(app, 'POST', '/register/s1/dashcam-7', undefined, bearer(await signed(ec.privateKey, 'ES256', claims())))).status).toBe(200);
    await expectRefused(app, '/register/s1/dashcam-7', await signed(rsa.privateKey, 'RS256', claims()), 401, /accepts only ES256/);
  });

  test('JWT_JWKS_FILE: picks the key by kid, RS256 and ES256, refuses an unknown kid and HS256', async () => {
    const app = jwtApp({ jwtJwksFile: jwksFile });
    expect((await req(app, 'POST', '/register/s1/dashcam-7', undefined, bearer(await signed(ec.privateKey, 'ES256', claims(), 'ec-1')))).status).toBe(200);
    expect((await req(app, 'POST', '/register/s1/dashcam-7', undefined, bearer(await signed(rsa.privateKey, 'RS256', claims(), 'rsa-1')))).status).toBe(200);
    const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    await expectRefused(app, '/register/s1/dashcam-7', await signed(stranger, 'ES256', claims(), 'ec-9'), 401, /no key in JWT_JWKS_FILE/);
    await expectRefused(app, '/register/s1/dashcam-7', await hs(claims()), 401, /accepts only RS256, ES256/);
  });

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
