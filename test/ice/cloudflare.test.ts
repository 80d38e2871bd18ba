import { afterEach, describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import { ConfigError, loadConfig } from '../../src/config';
import { CloudflareTurn, flattenIceServers } from '../../src/ice/cloudflare';
import { defaultConfig, ManualClock, req } from '../helpers';

/** Cloudflare's documented 201 answer to generate-ice-servers. */
const DOCUMENTED = {
  iceServers: [
    { urls: ['stun:stun.cloudflare.com:3478', 'stun:stun.cloudflare.com:53'] },
    {
      urls: [
        'turn:turn.cloudflare.com:3478?transport=udp',
        'turn:turn.cloudflare.com:53?transport=udp',
        'turn:turn.cloudflare.com:3478?transport=tcp',
        'turn:turn.cloudflare.com:80?transport=tcp',
        'turns:turn.cloudflare.com:5349?transport=tcp',
        'turns:turn.cloudflare.com:443?transport=tcp',
      ],
      username: 'bc91b63e2b5d759f',
      credential: 'ebd71f1d3edbc2b0',
    },
  ],
};
const FLAT_URLS = [
  'stun:stun.cloudflare.com:3478',
  'turn:turn.cloudflare.com:3478?transport=udp',
  'turn:turn.cloudflare.com:3478?transport=tcp',
  'turn:turn.cloudflare.com:80?transport=tcp',
  'turns:turn.cloudflare.com:5349?transport=tcp',
  'turns:turn.cloudflare.com:443?transport=tcp',
];
const KEY_ID = 'key-1';
const TOKEN = 'token-secret';
const FALLBACK = { urls: ['stun:stun.example:3478'] };

type Reply = { status: number; body: string } | 'hang' | 'hang-body';

/**
 * A local stand-in for the Realtime API: checks the bearer token and path as Cloudflare would, answers
 * with whatever `reply` says, records each call, and can hold an answer until released.
 */
function standIn() {
  let credentialNo = 0;
  const calls: { path: string; auth: string | null; body: unknown }[] = [];
  const arrived: (() => void)[] = [];
  const held: (() => void)[] = [];
  const state = {
    reply: undefined as Reply | undefined,
    calls,
    /** Resolves when the stand-in has received `n` calls in all. */
    called(n: number): Promise<void> {
      return calls.length >= n ? Promise.resolve() : new Promise((resolve) => arrived.push(() => calls.length >= n && resolve()));
    },
    release() {
      for (const fn of held.splice(0)) fn();
    },
    url: '',
    stop: () => server.stop(true),
  };
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(request) {
      const path = new URL(request.url).pathname;
      const text = await request.text();
      calls.push({ path, auth: request.headers.get('authorization'), body: text ? JSON.parse(text) : undefined });
      for (const fn of arrived) fn();
      if (request.headers.get('authorization') !== `Bearer ${TOKEN}`) {
        return Response.json({ success: false, errors: [{ code: 10000, message: 'Authentication error' }] }, { status: 401 });
      }
      if (path !== `/v1/turn/keys/${KEY_ID}/credentials/generate-ice-servers`) return new Response('not found', { status: 404 });
      const reply = state.reply;
      if (reply === 'hang') {
        await new Promise<void>((resolve) => held.push(resolve));
        return Response.json(DOCUMENTED, { status: 201 });
      }
      if (reply === 'hang-body') {
        // Headers at once, then a body that never ends.
        const body = new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode('{"iceServers":')) });
        return new Response(body, { status: 201, headers: { 'content-type': 'application/json' } });
      }
      if (reply) return new Response(reply.body, { status: reply.status, headers: { 'content-type': 'application/json' } });
      credentialNo++;
      const answer = structuredClone(DOCUMENTED);
      const turn = answer.iceServers[1] as { username: string; credential: string };
      turn.username = `user-${credentialNo}`;
      turn.credential = `pass-${credentialNo}`;
      return Response.json(answer, { status: 201 });
    },
  });
  state.url = `http://127.0.0.1:${server.port}/v1`;
  return state;
}

let upstream: ReturnType<typeof standIn>;
afterEach(() => {
  upstream?.release();
  upstream?.stop();
});

function source(clock: ManualClock, overrides: { apiToken?: string; ttlS?: number } = {}) {
  upstream = standIn();
  const logged: string[] = [];
  let headers!: () => void;
  const headersArrived = new Promise<void>((resolve) => {
    headers = resolve;
  });
  const turn = new CloudflareTurn({
    fetch: async (url, init) => {
      const response = await fetch(url, init);
      headers();
      return response;
    },
    keyId: KEY_ID,
    apiToken: overrides.apiToken ?? TOKEN,
    apiUrl: upstream.url,
    ttlS: overrides.ttlS ?? 3600,
    fallback: FALLBACK,
    clock,
    log: (m) => logged.push(m),
    timeoutMs: 2_000,
    retryMs: 10_000,
  });
  return { turn, logged, headersArrived };
}

describe('Cloudflare TURN source', () => {
  test('asks generate-ice-servers with the bearer token and ttl, and flattens the answer into the seed shape', async () => {
    const { turn, logged } = source(new ManualClock());
    expect(await turn.get()).toEqual({ urls: FLAT_URLS, username: 'user-1', credential: 'pass-1', ttl: 3600 });
    expect(upstream.calls).toEqual([{ path: `/v1/turn/keys/${KEY_ID}/credentials/generate-ice-servers`, auth: `Bearer ${TOKEN}`, body: { ttl: 3600 } }]);
    expect(logged).toEqual([]);
  });

  test('one upstream call serves every request for most of the lifetime; then one refresh', async () => {
    const clock = new ManualClock();
    const { turn } = source(clock, { ttlS: 1000 });
    expect((await turn.get()).username).toBe('user-1');
    clock.advance(700_000);
    const later = await turn.get();
    expect(later).toMatchObject({ username: 'user-1', ttl: 300 });
    expect(upstream.calls).toHaveLength(1);
    clock.advance(50_001);
    expect(await turn.get()).toMatchObject({ username: 'user-2', ttl: 1000 });
    expect(upstream.calls).toHaveLength(2);
  });

  test('concurrent requests share one refresh', async () => {
    const { turn } = source(new ManualClock());
    upstream.reply = 'hang';
    const answers = Promise.all(Array.from({ length: 5 }, () => turn.get()));
    await upstream.called(1);
    upstream.reply = undefined;
    upstream.release();
    const all = await answers;
    expect(new Set(all.map((a) => a.username)).size).toBe(1);
    expect(upstream.calls).toHaveLength(1);
  });

  const failures: [string, Reply, RegExp][] = [
    ['an error status', { status: 500, body: '{"success":false,"errors":[{"code":1000,"message":"internal"}]}' }, /answered 500: .*internal/],
    ['a body that is not JSON', { status: 201, body: '<html>oops</html>' }, /not JSON/],
    ['an answer without credentials', { status: 201, body: JSON.stringify({ iceServers: [{ urls: ['stun:stun.cloudflare.com:3478'] }] }) }, /no TURN credentials/],
    ['an answer without iceServers', { status: 201, body: '{"result":{}}' }, /no iceServers list/],
  ];
  for (const [what, reply, reason] of failures) {
    test(`${what} → the STUN fallback, and the log says why`, async () => {
      const { turn, logged } = source(new ManualClock());
      upstream.reply = reply;
      expect(await turn.get()).toEqual(FALLBACK);
      expect(logged).toHaveLength(1);
      expect(logged[0]).toMatch(reason);
      expect(logged[0]).toContain('serving STUN only');
    });
  }

  test('a refused token (401) → the STUN fallback; the token is not logged', async () => {
    const { turn, logged } = source(new ManualClock(), { apiToken: 'wrong' });
    expect(await turn.get()).toEqual(FALLBACK);
    expect(logged[0]).toMatch(/answered 401: .*Authentication error/);
    expect(logged.join('\n')).not.toContain('wrong');
  });

  for (const hang of ['hang', 'hang-body'] as const) {
    test(`a slow answer (${hang === 'hang' ? 'no headers' : 'headers, then no body'}) is given up on at the timeout`, async () => {
      const clock = new ManualClock();
      const { turn, logged, headersArrived } = source(clock);
      upstream.reply = hang;
      const answer = turn.get();
      await upstream.called(1);
      if (hang === 'hang-body') await headersArrived;
      clock.advance(1_999);
      let settled = false;
      void answer.then(() => {
        settled = true;
      });
      await Bun.sleep(0);
      expect(settled).toBe(false);
      clock.advance(1);
      expect(await answer).toEqual(FALLBACK);
      expect(logged[0]).toContain('no answer within 2000 ms');
    });
  }

  test('after a failure the API is asked again only after the retry delay', async () => {
    const clock = new ManualClock();
    const { turn } = source(clock);
    upstream.reply = { status: 503, body: 'unavailable' };
    expect(await turn.get()).toEqual(FALLBACK);
    expect(await turn.get()).toEqual(FALLBACK);
    expect(upstream.calls).toHaveLength(1);
    upstream.reply = undefined;
    clock.advance(10_000);
    expect((await turn.get()).username).toBe('user-1');
    expect(upstream.calls).toHaveLength(2);
  });

  test('a failed renewal keeps serving the credential while it is still valid', async () => {
    const clock = new ManualClock();
    const { turn, logged } = source(clock, { ttlS: 1000 });
    await turn.get();
    clock.advance(800_000);
    upstream.reply = { status: 500, body: 'down' };
    expect(await turn.get()).toMatchObject({ username: 'user-1', ttl: 200 });
    expect(logged[0]).toContain('serving the current ones');
    clock.advance(150_000);
    // 50 s left: too little to hand out.
    expect(await turn.get()).toEqual(FALLBACK);
  });
});

describe("Cloudflare TURN source: what a registration's answer may carry (inHand)", () => {
  test('nothing before the first credential; the credential until it is due; nothing once due, where get asks', async () => {
    const clock = new ManualClock();
    const { turn } = source(clock, { ttlS: 1000 });
    expect(turn.inHand()).toBeUndefined();
    expect(upstream.calls).toHaveLength(0);
    const first = await turn.get();
    expect(turn.inHand()).toEqual(first);
    clock.advance(700_000);
    expect(turn.inHand()).toMatchObject({ username: 'user-1', ttl: 300 });
    clock.advance(50_001);
    expect(turn.inHand()).toBeUndefined();
    expect(upstream.calls).toHaveLength(1);
  });

  test('while a failed call waits for its retry: what get serves without asking (the fallback, or the credential still valid); nothing once it may ask again', async () => {
    const clock = new ManualClock();
    const { turn } = source(clock, { ttlS: 1000 });
    upstream.reply = { status: 503, body: 'unavailable' };
    expect(await turn.get()).toEqual(FALLBACK);
    expect(turn.inHand()).toEqual(FALLBACK);
    clock.advance(10_000);
    expect(turn.inHand()).toBeUndefined();
    upstream.reply = undefined;
    await turn.get();
    clock.advance(800_000);
    upstream.reply = { status: 500, body: 'down' };
    expect(await turn.get()).toMatchObject({ username: 'user-1' });
    expect(turn.inHand()).toMatchObject({ username: 'user-1', ttl: 200 });
    clock.advance(5_000);
    expect(turn.inHand()).toMatchObject({ username: 'user-1', ttl: 195 });
    clock.advance(5_000);
    expect(turn.inHand()).toBeUndefined();
    expect(upstream.calls).toHaveLength(3);
  });
});

describe('flattenIceServers', () => {
  test('drops port-53 URLs, IPv6 hosts included, and keeps a single urls string', () => {
    const flat = flattenIceServers({
      iceServers: [{ urls: 'turn:[2606:4700::1]:53?transport=udp' }, { urls: ['turn:[2606:4700::1]:3478', 'turn:t.example:5353'], username: 'u', credential: 'c' }],
    });
    expect(flat).toEqual({ urls: ['turn:[2606:4700::1]:3478', 'turn:t.example:5353'], username: 'u', credential: 'c' });
  });

  test('only port-53 TURN URLs is no usable answer', () => {
    expect(() => flattenIceServers({ iceServers: [{ urls: ['turn:t:53?transport=udp'], username: 'u', credential: 'c' }] })).toThrow(/no TURN URL/);
  });
});

describe('GET /iceServers with Cloudflare configured', () => {
  test('serves the flattened credential through the route', async () => {
    upstream = standIn();
    const config = defaultConfig({ cloudflareTurnKeyId: KEY_ID, cloudflareTurnApiToken: TOKEN, cloudflareTurnApiUrl: upstream.url, turnTtlS: 600 });
    const { app } = createApp(config, { clock: new ManualClock() });
    const first = await req(app, 'GET', '/iceServers?peerId=viewer-1');
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ urls: FLAT_URLS, username: 'user-1', credential: 'pass-1', ttl: 600 });
    expect((await req(app, 'GET', '/iceServers')).body.username).toBe('user-1');
    expect(upstream.calls).toHaveLength(1);
  });

  test('falls back to the configured STUN URLs, not the TURN ones, when Cloudflare fails', async () => {
    upstream = standIn();
    upstream.reply = { status: 500, body: 'down' };
    const config = defaultConfig({
      cloudflareTurnKeyId: KEY_ID,
      cloudflareTurnApiToken: TOKEN,
      cloudflareTurnApiUrl: upstream.url,
      iceUrls: ['stun:stun.example:3478', 'turn:turn.example:3478'],
    });
    const warn = console.warn;
    console.warn = () => {};
    try {
      const res = await req(createApp(config, { clock: new ManualClock() }).app, 'GET', '/iceServers');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ urls: ['stun:stun.example:3478'] });
    } finally {
      console.warn = warn;
    }
  });
});

describe('Cloudflare settings', () => {
  const failure = (env: Record<string, string>) => {
    try {
      loadConfig([], env);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as Error).message;
    }
    throw new Error('expected a ConfigError');
  };

  test('read from the environment, with the documented base URL by default', () => {
    const command = loadConfig([], { CLOUDFLARE_TURN_KEY_ID: 'k', CLOUDFLARE_TURN_API_TOKEN: 't' });
    if (command.kind !== 'run') throw new Error('expected run');
    expect(command.config).toMatchObject({ cloudflareTurnKeyId: 'k', cloudflareTurnApiToken: 't', cloudflareTurnApiUrl: 'https://rtc.live.cloudflare.com/v1' });
  });

  test('refused when they cannot work', () => {
    expect(failure({ CLOUDFLARE_TURN_KEY_ID: 'k' })).toMatch(/CLOUDFLARE_TURN_KEY_ID and CLOUDFLARE_TURN_API_TOKEN/);
    expect(failure({ CLOUDFLARE_TURN_KEY_ID: 'k', CLOUDFLARE_TURN_API_TOKEN: 't', TURN_SECRET: 's', ICE_URLS: 'turn:t:3478' })).toMatch(/unset TURN_SECRET/);
    expect(failure({ CLOUDFLARE_TURN_KEY_ID: 'k', CLOUDFLARE_TURN_API_TOKEN: 't', TURN_TTL_S: '200000' })).toMatch(/^TURN_TTL_S=200000 is invalid/);
    expect(failure({ CLOUDFLARE_TURN_API_URL: 'ftp://x' })).toMatch(/^CLOUDFLARE_TURN_API_URL/);
  });
});
