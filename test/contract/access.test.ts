// Who may do what: open mode, AUTH_MODE=token, AUTH_MODE=jwt and the admin API, on one process and on a
// cluster. The token and the JWT are checked against what the store holds, so every refusal is asked of
// both; a peer's requests go to one instance and its stream to another.
import { afterAll, describe, expect, test } from 'bun:test';
import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, SignJWT, UnsecuredJWT } from 'jose';
import { ManualClock } from '../helpers';
import { ofType } from '../sse-client';
import { type Config, contractBackends, eachBackend, type Server } from './backends';

const backends = contractBackends();

/** Predictable tokens: tok-1, tok-2, … (the real generator is tested on its own), shared by a cluster's instances. */
const counter = () => {
  let n = 0;
  return () => `tok-${++n}`;
};
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const offer = (target: string) => ({ type: 'offer', payload: { sdp: 'v=0' }, target });

async function registered(s: Server, path: string, headers: Record<string, string> = {}) {
  const res = await s.req('POST', `/register/${path}`, undefined, headers);
  expect(res.status).toBe(200);
  return res.body.token as string;
}

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

async function expectRefused(s: Server, path: string, token: string | undefined, status: number, message: RegExp) {
  const res = await s.req('POST', path, undefined, token === undefined ? {} : bearer(token));
  expect(res.status).toBe(status);
  expect(res.body.error).toBe(status === 401 ? 'unauthorized' : 'forbidden');
  expect(res.body.message).toMatch(message);
}

const ADMIN = 'admin-token-for-tests-0123';
const admin = { authorization: `Bearer ${ADMIN}` };

eachBackend(backends, (backend) => {
  const tokenServer = (config: Partial<Config> = {}) => backend.start({ authMode: 'token', ...config }, { newToken: counter() });
  const jwtServer = (config: Partial<Config> = { jwtSecret: SECRET }) => backend.start({ authMode: 'jwt', ...config }, { clock });
  const adminServer = (config: Partial<Config> = {}) => {
    let n = 0;
    return backend.start({ authMode: 'token', adminToken: ADMIN, ...config }, { newToken: () => `tok-${++n}`, newId: () => `gen-${++n}` });
  };

  describe('open mode (the default)', () => {
    test('register also returns a token, and nothing asks for it', async () => {
      const s = await backend.start();
      const { body } = await s.req('POST', '/register/s/a');
      expect(body.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      await s.req('POST', '/register/s/b');
      expect((await s.req('POST', '/message/s/a', offer('b'))).status).toBe(202);
      expect((await s.req('POST', '/register/s/a')).status).toBe(200);
      expect((await s.req('DELETE', '/session/s')).status).toBe(200);
    });
  });

  describe('AUTH_MODE=token', () => {
    test('each registration gets its own token of 256 random bits', async () => {
      const s = await backend.start({ authMode: 'token' });
      const a = await registered(s, 's/a');
      const b = await registered(s, 's/b');
      expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(a).not.toBe(b);
    });

    test('the first peer of a session is its publisher, the others viewers', async () => {
      const s = await tokenServer();
      expect((await s.req('POST', '/register/s/a')).body.role).toBe('publisher');
      expect((await s.req('POST', '/register/s/b')).body.role).toBe('viewer');
    });

    test("POST /message needs the sender's own token: none → 401, another peer's → 403", async () => {
      const s = await tokenServer();
      const a = await registered(s, 's/a');
      const b = await registered(s, 's/b');
      const none = await s.req('POST', '/message/s/a', offer('b'));
      expect(none.status).toBe(401);
      expect(none.body).toEqual({ error: 'unauthorized', message: expect.stringContaining('Authorization: Bearer') });
      expect(none.headers.get('www-authenticate')).toStartWith('Bearer');
      // b's token cannot send as a.
      const spoofed = await s.req('POST', '/message/s/a', offer('b'), bearer(b));
      expect(spoofed.status).toBe(403);
      expect(spoofed.body.error).toBe('forbidden');
      expect((await s.req('POST', '/message/s/a', offer('b'), bearer(a))).status).toBe(202);
    });

    test('a token in the query does not count for POST /message (only GET /events takes one there)', async () => {
      const s = await tokenServer();
      const a = await registered(s, 's/a');
      await registered(s, 's/b');
      expect((await s.req('POST', `/message/s/a?token=${a}`, offer('b'))).status).toBe(401);
    });

    test('GET /events refuses a missing or foreign token before any stream opens', async () => {
      const s = await tokenServer();
      await registered(s, 's/a');
      const b = await registered(s, 's/b');
      expect((await s.req('GET', '/events/s/a')).status).toBe(401);
      const foreign = await s.req('GET', '/events/s/a', undefined, bearer(b));
      expect(foreign.status).toBe(403);
      expect(foreign.headers.get('content-type')).toContain('application/json');
      expect((await s.req('GET', `/events/s/a?token=${b}`)).status).toBe(403);
    });

    test('a token is bound to its session: the same peer id elsewhere does not accept it', async () => {
      const s = await tokenServer();
      const mine = await registered(s, 'mine/p');
      await registered(s, 'theirs/p');
      await registered(s, 'theirs/q');
      expect((await s.req('POST', '/message/theirs/p', offer('q'), bearer(mine))).status).toBe(403);
      expect((await s.req('GET', '/events/theirs/p', undefined, bearer(mine))).status).toBe(403);
      expect((await s.req('DELETE', '/register/theirs/p', undefined, bearer(mine))).status).toBe(403);
      expect((await s.req('DELETE', '/session/theirs', undefined, bearer(mine))).status).toBe(403);
    });

    test('taking over a registered id needs its token; the old token then stops working', async () => {
      const s = await tokenServer();
      const first = await registered(s, 's/a');
      const noToken = await s.req('POST', '/register/s/a');
      expect(noToken.status).toBe(401);
      expect(noToken.body.message).toContain('taking it over needs its token');
      const other = await registered(s, 's/b');
      expect((await s.req('POST', '/register/s/a', undefined, bearer(other))).status).toBe(403);
      const second = await registered(s, 's/a', bearer(first));
      expect(second).not.toBe(first);
      expect((await s.req('POST', '/message/s/a', offer('b'), bearer(first))).status).toBe(403);
      expect((await s.req('POST', '/message/s/a', offer('b'), bearer(second))).status).toBe(202);
    });

    test('once a registration has expired, anyone may register that id again', async () => {
      const s = await tokenServer({ peerTimeoutMs: 1000 });
      await registered(s, 's/keeper');
      const old = await registered(s, 's/a');
      expect((await s.req('POST', '/register/s/a')).status).toBe(401);
      await s.advance(1000);
      const fresh = await registered(s, 's/a');
      expect((await s.req('GET', '/events/s/a', undefined, bearer(old))).status).toBe(403);
      expect(fresh).not.toBe(old);
    });

    test('DELETE /register: the peer itself only', async () => {
      const s = await tokenServer();
      const a = await registered(s, 's/a');
      const b = await registered(s, 's/b');
      expect((await s.req('DELETE', '/register/s/a')).status).toBe(401);
      expect((await s.req('DELETE', '/register/s/a', undefined, bearer(b))).status).toBe(403);
      expect((await s.req('DELETE', '/register/s/a', undefined, bearer(a))).status).toBe(200);
    });

    test('DELETE /session: a publisher or the admin, never a viewer', async () => {
      const s = await tokenServer({ adminToken: 'admin-token-0123456789' });
      const publisher = await registered(s, 's/a');
      const viewer = await registered(s, 's/b');
      expect((await s.req('DELETE', '/session/s')).status).toBe(401);
      const byViewer = await s.req('DELETE', '/session/s', undefined, bearer(viewer));
      expect(byViewer.status).toBe(403);
      expect(byViewer.body.message).toContain('viewer');
      expect((await s.req('DELETE', '/session/s', undefined, bearer(publisher))).status).toBe(200);
      await registered(s, 't/a');
      expect((await s.req('DELETE', '/session/t', undefined, bearer('admin-token-0123456789'))).status).toBe(200);
    });

    test('unknown sessions and peers still answer 404, so clients know to register again', async () => {
      const s = await tokenServer();
      const a = await registered(s, 's/a');
      expect((await s.req('GET', '/events/nope/a', undefined, bearer(a))).body.error).toBe('session_not_found');
      expect((await s.req('GET', '/events/s/nope', undefined, bearer(a))).body.error).toBe('peer_not_found');
    });

    test('an Authorization header of another scheme counts as no token', async () => {
      const s = await tokenServer();
      const a = await registered(s, 's/a');
      expect((await s.req('GET', '/events/s/a', undefined, { authorization: `Basic ${a}` })).status).toBe(401);
      expect((await s.req('GET', '/events/s/a', undefined, { authorization: 'Bearer' })).status).toBe(401);
    });
  });

  describe('AUTH_MODE=token over a real listener', () => {
    test('EventSource-style ?token= opens the stream; the header works too; messages flow', async () => {
      const s = await backend.start({ authMode: 'token' });
      const a = (await s.register('s', 'a')).body.token;
      const b = (await s.register('s', 'b')).body.token;
      const aStream = await s.events('s', 'a', { query: `token=${encodeURIComponent(a)}` });
      const bStream = await s.events('s', 'b', { headers: bearer(b) });
      expect([aStream.status, bStream.status]).toEqual([200, 200]);
      expect((await s.message('s', 'b', offer('a'), { headers: bearer(b) })).status).toBe(200);
      expect((await aStream.next(ofType('offer'))).json.senderId).toBe('b');
    });

    test("a peer cannot open another peer's stream with its own token", async () => {
      const s = await backend.start({ authMode: 'token' });
      await s.register('s', 'a');
      const b = (await s.register('s', 'b')).body.token;
      const stolen = await s.req('GET', `/events/s/a?token=${b}`);
      expect(stolen.status).toBe(403);
      expect(stolen.headers.get('content-type')).toContain('application/json');
    });
  });

  describe('AUTH_MODE=jwt with JWT_SECRET (HS256)', () => {
    test('a valid JWT admits the peer it names, with its role; the peer token then guards the rest', async () => {
      const s = await jwtServer();
      const res = await s.req('POST', '/register/s1/dashcam-7', undefined, bearer(await hs(claims())));
      expect(res.status).toBe(200);
      expect(res.body.role).toBe('publisher');
      const viewer = await s.req('POST', '/register/s1/viewer-1', undefined, bearer(await hs(claims({ peer: 'viewer-1', role: 'viewer' }))));
      expect(viewer.body.role).toBe('viewer');
      const offer = { type: 'offer', target: 'viewer-1' };
      expect((await s.req('POST', '/message/s1/dashcam-7', offer, bearer(res.body.token))).status).toBe(202);
      expect((await s.req('POST', '/message/s1/dashcam-7', offer)).status).toBe(401);
      // The JWT is for registering; it is not the peer token.
      expect((await s.req('POST', '/message/s1/dashcam-7', offer, bearer(await hs(claims())))).status).toBe(403);
      expect((await s.req('DELETE', '/session/s1', undefined, bearer(viewer.body.token))).status).toBe(403);
      expect((await s.req('DELETE', '/session/s1', undefined, bearer(res.body.token))).status).toBe(200);
    });

    test('"session": "*" admits the peer to any session', async () => {
      const s = await jwtServer();
      const token = await hs(claims({ session: '*' }));
      expect((await s.req('POST', '/register/anything/dashcam-7', undefined, bearer(token))).status).toBe(200);
      expect((await s.req('POST', '/register/else/dashcam-7', undefined, bearer(token))).status).toBe(200);
    });

    test('a fresh JWT for the same peer takes its id over (a rebooted device); one for another peer cannot', async () => {
      const s = await jwtServer();
      expect((await s.req('POST', '/register/s1/dashcam-7', undefined, bearer(await hs(claims())))).status).toBe(200);
      expect((await s.req('POST', '/register/s1/dashcam-7', undefined, bearer(await hs(claims())))).status).toBe(200);
      await expectRefused(s, '/register/s1/dashcam-7', await hs(claims({ peer: 'intruder' })), 403, /admits peer intruder, not dashcam-7/);
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
      await expectRefused(await jwtServer(), '/register/s1/dashcam-7', payload === undefined ? undefined : await hs(payload), status, message);
    });

    test('refuses a JWT signed with another secret', async () => {
      const forged = await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('another-secret-that-is-long-enough!!'));
      await expectRefused(await jwtServer(), '/register/s1/dashcam-7', forged, 401, /signature does not match/);
    });

    test('refuses alg "none"', async () => {
      const unsigned = new UnsecuredJWT(claims()).encode();
      await expectRefused(await jwtServer(), '/register/s1/dashcam-7', unsigned, 401, /signed with "none"; this server accepts only HS256/);
    });

    test('refuses a tampered payload', async () => {
      const [header, , signature] = (await hs(claims())).split('.');
      await expectRefused(
        await jwtServer(),
        '/register/s1/dashcam-7',
        `${header}.${b64(claims({ peer: 'dashcam-7', role: 'publisher', session: '*' }))}.${signature}`,
        401,
        /signature/,
      );
    });

    test.each([['garbage'], ['a.b.c'], ['x'.repeat(9000)]])('refuses a credential that is no JWT: %#', async (token) => {
      const res = await (await jwtServer()).req('POST', '/register/s1/dashcam-7', undefined, bearer(token));
      expect(res.status).toBe(401);
    });

    test('JWT_ISSUER and JWT_AUDIENCE, when set, must match', async () => {
      const s = await jwtServer({ jwtSecret: SECRET, jwtIssuer: 'https://backend.example', jwtAudience: 'switchboard' });
      await expectRefused(s, '/register/s1/dashcam-7', await hs(claims()), 401, /"iss" claim/);
      await expectRefused(s, '/register/s1/dashcam-7', await hs(claims({ iss: 'https://backend.example' })), 401, /"aud" claim/);
      const ok = await hs(claims({ iss: 'https://backend.example', aud: 'switchboard' }));
      expect((await s.req('POST', '/register/s1/dashcam-7', undefined, bearer(ok))).status).toBe(200);
    });
  });

  describe('AUTH_MODE=jwt with a public key', () => {
    test('JWT_PUBLIC_KEY_FILE with an RSA key: RS256 passes, anything else is refused', async () => {
      const s = await jwtServer({ jwtPublicKeyFile: rsaFile });
      expect((await s.req('POST', '/register/s1/dashcam-7', undefined, bearer(await signed(rsa.privateKey, 'RS256', claims())))).status).toBe(200);
      const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
      await expectRefused(s, '/register/s1/dashcam-7', await signed(other, 'RS256', claims()), 401, /signature does not match/);
      await expectRefused(s, '/register/s1/dashcam-7', new UnsecuredJWT(claims()).encode(), 401, /"none"; this server accepts only RS256/);
    });

    test('HS/RS confusion: a JWT MACed with the public key as an HS256 secret is refused', async () => {
      const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims())}`;
      const confused = `${body}.${createHmac('sha256', rsaPem).update(body).digest('base64url')}`;
      await expectRefused(await jwtServer({ jwtPublicKeyFile: rsaFile }), '/register/s1/dashcam-7', confused, 401, /signed with "HS256"; this server accepts only RS256/);
    });

    test('JWT_PUBLIC_KEY_FILE with a P-256 key: ES256', async () => {
      const s = await jwtServer({ jwtPublicKeyFile: ecFile });
      expect((await s.req('POST', '/register/s1/dashcam-7', undefined, bearer(await signed(ec.privateKey, 'ES256', claims())))).status).toBe(200);
      await expectRefused(s, '/register/s1/dashcam-7', await signed(rsa.privateKey, 'RS256', claims()), 401, /accepts only ES256/);
    });

    test('JWT_JWKS_FILE: picks the key by kid, RS256 and ES256, refuses an unknown kid and HS256', async () => {
      const s = await jwtServer({ jwtJwksFile: jwksFile });
      expect((await s.req('POST', '/register/s1/dashcam-7', undefined, bearer(await signed(ec.privateKey, 'ES256', claims(), 'ec-1')))).status).toBe(200);
      expect((await s.req('POST', '/register/s1/dashcam-7', undefined, bearer(await signed(rsa.privateKey, 'RS256', claims(), 'rsa-1')))).status).toBe(200);
      const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
      await expectRefused(s, '/register/s1/dashcam-7', await signed(stranger, 'ES256', claims(), 'ec-9'), 401, /no key in JWT_JWKS_FILE/);
      await expectRefused(s, '/register/s1/dashcam-7', await hs(claims()), 401, /accepts only RS256, ES256/);
    });
  });

  describe('the admin token', () => {
    test('missing → 401, wrong → 403, before the body is looked at', async () => {
      const s = await adminServer();
      expect((await s.req('GET', '/sessions')).status).toBe(401);
      expect((await s.req('GET', '/sessions', undefined, bearer(`${ADMIN}x`))).status).toBe(403);
      expect((await s.req('POST', '/sessions', '{not json', bearer('wrong-token-000000000'))).status).toBe(403);
      expect((await s.req('POST', '/sessions', '{not json', admin)).status).toBe(400);
    });

    test('a peer token is not an admin token', async () => {
      const s = await adminServer();
      const { token } = (await s.req('POST', '/register/s/a')).body;
      expect((await s.req('GET', '/sessions', undefined, bearer(token))).status).toBe(403);
    });
  });

  describe('POST /sessions', () => {
    /** A session with an allow-list of two peers. */
    const liveSession = {
      sessionId: 'live-1',
      peers: [
        { peerId: 'dashcam-7', role: 'publisher' },
        { peerId: 'ops-1', role: 'viewer' },
      ],
    };

    test('creates a session with an allow-list and returns one join token per peer', async () => {
      const s = await adminServer();
      const res = await s.req('POST', '/sessions', liveSession, admin);
      expect(res.status).toBe(201);
      expect(res.body).toEqual({
        sessionId: 'live-1',
        idleS: 3600,
        mode: 'mesh',
        peers: [
          { peerId: 'dashcam-7', role: 'publisher', token: 'tok-1' },
          { peerId: 'ops-1', role: 'viewer', token: 'tok-2' },
        ],
      });
    });

    test('only invited peers join, each with its own join token, and get the role it was given', async () => {
      const s = await adminServer();
      const { body } = await s.req('POST', '/sessions', liveSession, admin);
      const [device, viewer] = body.peers;
      expect((await s.req('POST', '/register/live-1/stranger')).status).toBe(403);
      expect((await s.req('POST', '/register/live-1/dashcam-7')).status).toBe(401);
      expect((await s.req('POST', '/register/live-1/dashcam-7', undefined, bearer(viewer.token))).status).toBe(403);
      const joined = await s.req('POST', '/register/live-1/ops-1', undefined, bearer(viewer.token));
      expect(joined.status).toBe(200);
      expect(joined.body.role).toBe('viewer');
      // The viewer joined first, yet the device keeps the publisher role it was given.
      const dev = await s.req('POST', '/register/live-1/dashcam-7', undefined, bearer(device.token));
      expect(dev.body.role).toBe('publisher');
      // The join token keeps working for that peer (a device that rebooted), and stays distinct from the peer token.
      expect((await s.req('POST', '/register/live-1/dashcam-7', undefined, bearer(device.token))).status).toBe(200);
      expect(dev.body.token).not.toBe(device.token);
    });

    test('with no body: a generated id, anyone may join (token mode), the first as publisher', async () => {
      const s = await adminServer();
      const res = await s.req('POST', '/sessions', undefined, admin);
      expect(res.status).toBe(201);
      expect(res.body).toEqual({ sessionId: expect.stringMatching(/^gen-/), idleS: 3600, mode: 'mesh', peers: [] });
      expect((await s.req('POST', `/register/${res.body.sessionId}/x`)).body.role).toBe('publisher');
    });

    test.each([
      ['an existing session', { sessionId: 'taken' }, 409, 'session_exists'],
      ['a bad session id', { sessionId: 'a/b' }, 400, 'invalid_request'],
      ['a bad role', { peers: [{ peerId: 'p', role: 'owner' }] }, 400, 'invalid_request'],
      [
        'a peer listed twice',
        {
          peers: [
            { peerId: 'p', role: 'viewer' },
            { peerId: 'p', role: 'viewer' },
          ],
        },
        400,
        'invalid_request',
      ],
      [
        'more peers than a session holds',
        {
          peers: [
            { peerId: 'a', role: 'viewer' },
            { peerId: 'b', role: 'viewer' },
            { peerId: 'c', role: 'viewer' },
          ],
        },
        400,
        'invalid_request',
      ],
    ])('refuses %s', async (_, body, status, error) => {
      const s = await adminServer({ maxPeersPerSession: 2 });
      await s.req('POST', '/sessions', { sessionId: 'taken' }, admin);
      const res = await s.req('POST', '/sessions', body, admin);
      expect(res.status).toBe(status);
      expect(res.body.error).toBe(error);
    });

    test('the session outlives its last peer, and ends after idleS without any', async () => {
      const s = await adminServer();
      const { body } = await s.req('POST', '/sessions', { sessionId: 'live', idleS: 60, peers: [{ peerId: 'd', role: 'publisher' }] }, admin);
      await s.advance(59_000);
      const joined = await s.req('POST', '/register/live/d', undefined, bearer(body.peers[0].token));
      await s.advance(10_000);
      expect((await s.req('GET', '/sessions/live', undefined, admin)).body.peers).toHaveLength(1);
      await s.req('DELETE', '/register/live/d', undefined, bearer(joined.body.token));
      // Empty again: the device can come back with its join token until idleS has passed.
      await s.advance(59_000);
      expect((await s.req('POST', '/register/live/d', undefined, bearer(body.peers[0].token))).status).toBe(200);
      expect((await s.req('DELETE', '/session/live', undefined, admin)).status).toBe(200);
      await s.req('POST', '/sessions', { sessionId: 'idle', idleS: 60 }, admin);
      await s.advance(60_000);
      expect((await s.req('GET', '/sessions/idle', undefined, admin)).status).toBe(404);
    });
  });

  describe('GET /sessions and /sessions/:id', () => {
    test('list sessions, their peers, roles and whether each stream is open', async () => {
      const s = await adminServer();
      const a = (await s.register('s', 'a')).body.token;
      await s.register('s', 'b');
      await s.req('POST', '/sessions', { sessionId: 'planned', peers: [{ peerId: 'd', role: 'publisher' }] }, admin);
      await s.events('s', 'a', { query: `token=${a}` });

      const list = await s.req('GET', '/sessions', undefined, admin);
      expect(list.body.sessions).toEqual([
        {
          sessionId: 's',
          createdAt: expect.any(String),
          managed: false,
          mode: 'mesh',
          peers: [
            { peerId: 'a', role: 'publisher', streaming: true },
            { peerId: 'b', role: 'viewer', streaming: false },
          ],
        },
        { sessionId: 'planned', createdAt: expect.any(String), managed: true, mode: 'mesh', peers: [], invited: [{ peerId: 'd', role: 'publisher', joined: false }] },
      ]);
      const one = await s.req('GET', '/sessions/s', undefined, admin);
      expect(one.body.peers[0]).toEqual({ peerId: 'a', role: 'publisher', streaming: true });
      expect((await s.req('GET', '/sessions/nope', undefined, admin)).status).toBe(404);
    });

    test('no token ever appears in the admin views', async () => {
      const s = await adminServer();
      await s.req('POST', '/sessions', { sessionId: 'x', peers: [{ peerId: 'd', role: 'publisher' }] }, admin);
      await s.req('POST', '/register/y/a');
      const text = JSON.stringify((await s.req('GET', '/sessions', undefined, admin)).body);
      expect(text).not.toContain('tok-');
      expect(text).not.toContain('Hash');
    });
  });
});
