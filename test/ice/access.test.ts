// Who gets TURN credentials from GET /iceServers: anyone in AUTH_MODE=open, only a peer proved by its
// token otherwise, and every address only so often; a registration's answer carries the peer's.
import { describe, expect, test } from 'bun:test';
import { SignJWT } from 'jose';
import { createApp } from '../../src/app';
import type { Config } from '../../src/config';
import { turnRestCredential } from '../../src/ice/ice-servers';
import { defaultConfig, ManualClock, req } from '../helpers';

const TURN = { iceUrls: ['stun:s.example:3478', 'turn:t.example:3478'], turnSecret: 'north', turnTtlS: 600 } satisfies Partial<Config>;
const STUN_ONLY = { urls: ['stun:s.example:3478'] };
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function app(config: Partial<Config>, clock = new ManualClock(1_700_000_000_000)) {
  return createApp(defaultConfig({ ...TURN, ...config }), { clock }).app;
}

/** Registers `peerId` in session `s`: the answer's peer token and ICE servers. */
async function registration(server: ReturnType<typeof app>, peerId: string, headers: Record<string, string> = {}): Promise<{ token: string; iceServers: unknown }> {
  const res = await req(server, 'POST', `/register/s/${peerId}`, undefined, headers);
  expect(res.status).toBe(200);
  return { token: res.body.token, iceServers: res.body.iceServers };
}

/** Registers `peerId` in session `s` and returns its peer token. */
const register = async (server: ReturnType<typeof app>, peerId: string, headers: Record<string, string> = {}) => (await registration(server, peerId, headers)).token;

/**
 * Runs `body` against an app in AUTH_MODE=token whose TURN credentials come from a stand-in for
 * Cloudflare's API on 127.0.0.1; `asked` counts the calls it got.
 */
async function withCloudflare(body: (server: ReturnType<typeof app>, asked: () => number) => Promise<void>): Promise<void> {
  let calls = 0;
  const upstream = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: () => {
      calls++;
      return Response.json(
        { iceServers: [{ urls: ['stun:stun.cloudflare.com:3478'] }, { urls: ['turn:turn.cloudflare.com:3478?transport=udp'], username: 'cf-user', credential: 'cf-pass' }] },
        { status: 201 },
      );
    },
  });
  try {
    const server = app({
      authMode: 'token',
      turnSecret: undefined,
      cloudflareTurnKeyId: 'key',
      cloudflareTurnApiToken: 'api-token',
      cloudflareTurnApiUrl: `http://127.0.0.1:${upstream.port}/v1`,
    });
    await body(server, () => calls);
  } finally {
    upstream.stop(true);
  }
}

describe('GET /iceServers in AUTH_MODE=open', () => {
  test('anyone gets credentials named after ?peerId=, as before', async () => {
    const res = await req(app({ authMode: 'open' }), 'GET', '/iceServers?peerId=dashcam-7');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ urls: TURN.iceUrls, ...turnRestCredential('north', 'dashcam-7', 1_700_000_600), ttl: 600 });
  });
});

describe('GET /iceServers in AUTH_MODE=token', () => {
  test("without a token: the STUN URLs only, in the seed's shape, whatever ?peerId= says", async () => {
    const server = app({ authMode: 'token' });
    await register(server, 'dashcam-7');
    for (const path of ['/iceServers', '/iceServers?peerId=dashcam-7', '/iceServers?sessionId=s&peerId=dashcam-7']) {
      const res = await req(server, 'GET', path);
      expect(res.status).toBe(200);
      expect(res.body).toEqual(STUN_ONLY);
    }
  });

  test('fixed TURN credentials are withheld just the same', async () => {
    const server = app({ authMode: 'token', turnSecret: undefined, turnUsername: 'user', turnCredential: 'pass' });
    expect((await req(server, 'GET', '/iceServers?peerId=a')).body).toEqual(STUN_ONLY);
    const token = await register(server, 'a');
    const res = await req(server, 'GET', '/iceServers?sessionId=s&peerId=a', undefined, bearer(token));
    expect(res.body).toEqual({ urls: TURN.iceUrls, username: 'user', credential: 'pass' });
  });

  test('with no TURN credentials configured, the configured list is served as it is', async () => {
    const urls = ['stun:s.example:3478', 'turn:t.example:3478'];
    const res = await req(createApp(defaultConfig({ authMode: 'token', iceUrls: urls })).app, 'GET', '/iceServers');
    expect(res.body).toEqual({ urls });
  });

  test("with the peer's token (header or ?token=): credentials naming that peer", async () => {
    const server = app({ authMode: 'token' });
    const token = await register(server, 'dashcam-7');
    const expected = { urls: TURN.iceUrls, ...turnRestCredential('north', 'dashcam-7', 1_700_000_600), ttl: 600 };
    const byHeader = await req(server, 'GET', '/iceServers?sessionId=s&peerId=dashcam-7', undefined, bearer(token));
    expect(byHeader.status).toBe(200);
    expect(byHeader.body).toEqual(expected);
    const byQuery = await req(server, 'GET', `/iceServers?sessionId=s&peerId=dashcam-7&token=${token}`);
    expect(byQuery.body).toEqual(expected);
  });

  test("a token that proves no peer gets the STUN URLs only, never an error: wrong, stale, unregistered, another session's", async () => {
    const server = app({ authMode: 'token' });
    const stale = await register(server, 'dashcam-7');
    const current = await register(server, 'dashcam-7', bearer(stale));
    for (const [path, token] of [
      ['/iceServers?sessionId=s&peerId=dashcam-7', 'not-the-token'],
      ['/iceServers?sessionId=s&peerId=dashcam-7', stale],
      ['/iceServers?sessionId=s&peerId=nobody', current],
      ['/iceServers?sessionId=other&peerId=dashcam-7', current],
      [`/iceServers?sessionId=s&peerId=dashcam-7&token=${stale}`, undefined],
    ] as const) {
      const res = await req(server, 'GET', path, undefined, token === undefined ? {} : bearer(token));
      expect(res.status).toBe(200);
      expect(res.body).toEqual(STUN_ONLY);
    }
  });

  test("one's own token with another peer's ?peerId= does not get credentials in that peer's name", async () => {
    const server = app({ authMode: 'token' });
    const mine = await register(server, 'viewer-1');
    await register(server, 'dashcam-7');
    const res = await req(server, 'GET', '/iceServers?sessionId=s&peerId=dashcam-7', undefined, bearer(mine));
    expect(res.body).toEqual(STUN_ONLY);
    expect(JSON.stringify(res.body)).not.toContain('dashcam-7');
  });

  test('a token without ?sessionId= (as a client that sends its token everywhere) proves nothing: STUN only, no error', async () => {
    const server = app({ authMode: 'token' });
    const token = await register(server, 'a');
    const res = await req(server, 'GET', '/iceServers?peerId=a', undefined, bearer(token));
    expect(res.status).toBe(200);
    expect(res.body).toEqual(STUN_ONLY);
  });

  test("Cloudflare's credentials go only to a registered peer", async () => {
    await withCloudflare(async (server) => {
      expect((await req(server, 'GET', '/iceServers?peerId=a')).body).toEqual(STUN_ONLY);
      const token = await register(server, 'a');
      const res = await req(server, 'GET', '/iceServers?sessionId=s&peerId=a', undefined, bearer(token));
      expect(res.body).toMatchObject({ username: 'cf-user', credential: 'cf-pass' });
    });
  });
});

describe('GET /iceServers in AUTH_MODE=jwt', () => {
  const SECRET = 'a-shared-secret-of-at-least-32-chars!';
  test('the peer token POST /register returned for a JWT gets credentials; the JWT itself and no token do not', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const server = app({ authMode: 'jwt', jwtSecret: SECRET }, clock);
    const jwt = await new SignJWT({ session: 's', peer: 'dashcam-7', role: 'publisher', exp: Math.floor(clock.now() / 1000) + 600 })
      .setProtectedHeader({ alg: 'HS256' })
      .sign(new TextEncoder().encode(SECRET));
    const token = await register(server, 'dashcam-7', bearer(jwt));
    expect((await req(server, 'GET', '/iceServers?peerId=dashcam-7')).body).toEqual(STUN_ONLY);
    expect((await req(server, 'GET', '/iceServers?sessionId=s&peerId=dashcam-7', undefined, bearer(jwt))).body).toEqual(STUN_ONLY);
    const res = await req(server, 'GET', '/iceServers?sessionId=s&peerId=dashcam-7', undefined, bearer(token));
    expect(res.body.username).toBe('1700000600:dashcam-7');
  });
});

describe("the registration's answer carries the ICE servers", () => {
  for (const authMode of ['open', 'token'] as const) {
    test(`AUTH_MODE=${authMode}: what GET /iceServers answers with the new token, TURN credentials naming the peer`, async () => {
      const server = app({ authMode });
      const { iceServers, token } = await registration(server, 'dashcam-7');
      expect(iceServers).toEqual({ urls: TURN.iceUrls, ...turnRestCredential('north', 'dashcam-7', 1_700_000_600), ttl: 600 });
      expect((await req(server, 'GET', '/iceServers?sessionId=s&peerId=dashcam-7', undefined, bearer(token))).body).toEqual(iceServers);
    });
  }

  test('a takeover with the old token gets them anew; without TURN credentials configured, the list as it is', async () => {
    const server = app({ authMode: 'token' });
    const first = await registration(server, 'a');
    expect((await registration(server, 'a', bearer(first.token))).iceServers).toEqual(first.iceServers);
    const urls = ['stun:s.example:3478'];
    const plain = await req(createApp(defaultConfig({ authMode: 'token', iceUrls: urls })).app, 'POST', '/register/s/b');
    expect(plain.body.iceServers).toEqual({ urls });
  });

  test("with Cloudflare: absent until a credential is in hand (GET /iceServers waits for one), then Cloudflare's, asked once", async () => {
    await withCloudflare(async (server, asked) => {
      const first = await registration(server, 'a');
      expect(first.iceServers).toBeUndefined();
      expect(asked()).toBe(0);
      const fetched = await req(server, 'GET', '/iceServers?sessionId=s&peerId=a', undefined, bearer(first.token));
      expect(fetched.body).toMatchObject({ username: 'cf-user', credential: 'cf-pass' });
      expect((await registration(server, 'b')).iceServers).toEqual(fetched.body);
      expect(asked()).toBe(1);
    });
  });
});

describe('GET /iceServers per client address', () => {
  const from = (address: string) => ({ 'x-forwarded-for': address });

  test('429 rate_limited with Retry-After once the burst is spent; other addresses unaffected; refills with time', async () => {
    const clock = new ManualClock();
    const server = app({ trustProxy: 1, iceServersRatePerMin: 6, iceServersBurst: 2 }, clock);
    expect((await req(server, 'GET', '/iceServers', undefined, from('198.51.100.1'))).status).toBe(200);
    expect((await req(server, 'GET', '/iceServers', undefined, from('198.51.100.1'))).status).toBe(200);
    const refused = await req(server, 'GET', '/iceServers?peerId=a', undefined, from('198.51.100.1'));
    expect(refused.status).toBe(429);
    expect(refused.body.error).toBe('rate_limited');
    expect(refused.headers.get('retry-after')).toBe('10');
    expect((await req(server, 'GET', '/iceServers', undefined, from('198.51.100.2'))).status).toBe(200);
    clock.advance(10_000);
    expect((await req(server, 'GET', '/iceServers', undefined, from('198.51.100.1'))).status).toBe(200);
  });

  test('on by default; 0 turns it off', async () => {
    const limited = app({ trustProxy: 1 });
    let status = 200;
    for (let i = 0; i < 100 && status === 200; i++) status = (await req(limited, 'GET', '/iceServers', undefined, from('198.51.100.1'))).status;
    expect(status).toBe(429);
    const unlimited = app({ trustProxy: 1, iceServersRatePerMin: 0 });
    for (let i = 0; i < 100; i++) expect((await req(unlimited, 'GET', '/iceServers', undefined, from('198.51.100.1'))).status).toBe(200);
  });
});
