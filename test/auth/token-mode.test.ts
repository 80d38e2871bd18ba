import { describe, expect, spyOn, test } from 'bun:test';
import { createApp } from '../../src/app';
import type { Config } from '../../src/config';
import { createLogger } from '../../src/log/logger';
import { defaultConfig, ManualClock, req, serversPerTest } from '../helpers';
import { ofType, openEvents } from '../sse-client';

/** Predictable tokens: t1, t2, … (the real generator is tested on its own). */
const counter = () => {
  let n = 0;
  return () => `tok-${++n}`;
};
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const offer = (target: string) => ({ type: 'offer', payload: { sdp: 'v=0' }, target });

function tokenApp(config: Partial<Config> = {}, clock = new ManualClock()) {
  return createApp(defaultConfig({ authMode: 'token', ...config }), { clock, newToken: counter() }).app;
}

async function registered(app: ReturnType<typeof tokenApp>, path: string, headers: Record<string, string> = {}) {
  const res = await req(app, 'POST', `/register/${path}`, undefined, headers);
  expect(res.status).toBe(200);
  return res.body.token as string;
}

describe('open mode (the default)', () => {
  test('register also returns a token, and nothing asks for it', async () => {
    const { app } = createApp(defaultConfig());
    const { body } = await req(app, 'POST', '/register/s/a');
    expect(body.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    await req(app, 'POST', '/register/s/b');
    expect((await req(app, 'POST', '/message/s/a', offer('b'))).status).toBe(202);
    expect((await req(app, 'POST', '/register/s/a')).status).toBe(200);
    expect((await req(app, 'DELETE', '/session/s')).status).toBe(200);
  });
});

describe('AUTH_MODE=token', () => {
  test('each registration gets its own token of 256 random bits', async () => {
    const { app } = createApp(defaultConfig({ authMode: 'token' }));
    const a = await registered(app, 's/a');
    const b = await registered(app, 's/b');
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a).not.toBe(b);
  });

  test('the first peer of a session is its publisher, the others viewers', async () => {
    const app = tokenApp();
    expect((await req(app, 'POST', '/register/s/a')).body.role).toBe('publisher');
    expect((await req(app, 'POST', '/register/s/b')).body.role).toBe('viewer');
  });

  test("POST /message needs the sender's own token: none → 401, another peer's → 403", async () => {
    const app = tokenApp();
    const a = await registered(app, 's/a');
    const b = await registered(app, 's/b');
    const none = await req(app, 'POST', '/message/s/a', offer('b'));
    expect(none.status).toBe(401);
    expect(none.body).toEqual({ error: 'unauthorized', message: expect.stringContaining('Authorization: Bearer') });
    expect(none.headers.get('www-authenticate')).toStartWith('Bearer');
    // b's token cannot send as a.
    const spoofed = await req(app, 'POST', '/message/s/a', offer('b'), bearer(b));
    expect(spoofed.status).toBe(403);
    expect(spoofed.body.error).toBe('forbidden');
    expect((await req(app, 'POST', '/message/s/a', offer('b'), bearer(a))).status).toBe(202);
  });

  test('a token in the query does not count for POST /message (only GET /events takes one there)', async () => {
    const app = tokenApp();
    const a = await registered(app, 's/a');
    await registered(app, 's/b');
    expect((await req(app, 'POST', `/message/s/a?token=${a}`, offer('b'))).status).toBe(401);
  });

  test('GET /events refuses a missing or foreign token before any stream opens', async () => {
    const app = tokenApp();
    await registered(app, 's/a');
    const b = await registered(app, 's/b');
    expect((await req(app, 'GET', '/events/s/a')).status).toBe(401);
    const foreign = await req(app, 'GET', '/events/s/a', undefined, bearer(b));
    expect(foreign.status).toBe(403);
    expect(foreign.headers.get('content-type')).toContain('application/json');
    expect((await req(app, 'GET', `/events/s/a?token=${b}`)).status).toBe(403);
  });

  test('a token is bound to its session: the same peer id elsewhere does not accept it', async () => {
    const app = tokenApp();
    const mine = await registered(app, 'mine/p');
    await registered(app, 'theirs/p');
    await registered(app, 'theirs/q');
    expect((await req(app, 'POST', '/message/theirs/p', offer('q'), bearer(mine))).status).toBe(403);
    expect((await req(app, 'GET', '/events/theirs/p', undefined, bearer(mine))).status).toBe(403);
    expect((await req(app, 'DELETE', '/register/theirs/p', undefined, bearer(mine))).status).toBe(403);
    expect((await req(app, 'DELETE', '/session/theirs', undefined, bearer(mine))).status).toBe(403);
  });

  test('taking over a registered id needs its token; the old token then stops working', async () => {
    const app = tokenApp();
    const first = await registered(app, 's/a');
    const noToken = await req(app, 'POST', '/register/s/a');
    expect(noToken.status).toBe(401);
    expect(noToken.body.message).toContain('taking it over needs its token');
    const other = await registered(app, 's/b');
    expect((await req(app, 'POST', '/register/s/a', undefined, bearer(other))).status).toBe(403);
    const second = await registered(app, 's/a', bearer(first));
    expect(second).not.toBe(first);
    expect((await req(app, 'POST', '/message/s/a', offer('b'), bearer(first))).status).toBe(403);
    expect((await req(app, 'POST', '/message/s/a', offer('b'), bearer(second))).status).toBe(202);
  });

  test('once a registration has expired, anyone may register that id again', async () => {
    const clock = new ManualClock();
    const app = tokenApp({ peerTimeoutMs: 1000 }, clock);
    await registered(app, 's/keeper');
    const old = await registered(app, 's/a');
    expect((await req(app, 'POST', '/register/s/a')).status).toBe(401);
    clock.advance(1000);
    const fresh = await registered(app, 's/a');
    expect((await req(app, 'GET', '/events/s/a', undefined, bearer(old))).status).toBe(403);
    expect(fresh).not.toBe(old);
  });

  test('DELETE /register: the peer itself only', async () => {
    const app = tokenApp();
    const a = await registered(app, 's/a');
    const b = await registered(app, 's/b');
    expect((await req(app, 'DELETE', '/register/s/a')).status).toBe(401);
    expect((await req(app, 'DELETE', '/register/s/a', undefined, bearer(b))).status).toBe(403);
    expect((await req(app, 'DELETE', '/register/s/a', undefined, bearer(a))).status).toBe(200);
  });

  test('DELETE /session: a publisher or the admin, never a viewer', async () => {
    const app = tokenApp({ adminToken: 'admin-token-0123456789' });
    const publisher = await registered(app, 's/a');
    const viewer = await registered(app, 's/b');
    expect((await req(app, 'DELETE', '/session/s')).status).toBe(401);
    const byViewer = await req(app, 'DELETE', '/session/s', undefined, bearer(viewer));
    expect(byViewer.status).toBe(403);
    expect(byViewer.body.message).toContain('viewer');
    expect((await req(app, 'DELETE', '/session/s', undefined, bearer(publisher))).status).toBe(200);
    await registered(app, 't/a');
    expect((await req(app, 'DELETE', '/session/t', undefined, bearer('admin-token-0123456789'))).status).toBe(200);
  });

  test('unknown sessions and peers still answer 404, so clients know to register again', async () => {
    const app = tokenApp();
    const a = await registered(app, 's/a');
    expect((await req(app, 'GET', '/events/nope/a', undefined, bearer(a))).body.error).toBe('session_not_found');
    expect((await req(app, 'GET', '/events/s/nope', undefined, bearer(a))).body.error).toBe('peer_not_found');
  });

  test('an Authorization header of another scheme counts as no token', async () => {
    const app = tokenApp();
    const a = await registered(app, 's/a');
    expect((await req(app, 'GET', '/events/s/a', undefined, { authorization: `Basic ${a}` })).status).toBe(401);
    expect((await req(app, 'GET', '/events/s/a', undefined, { authorization: 'Bearer' })).status).toBe(401);
  });
});

describe('AUTH_MODE=token over a real listener', () => {
  const { listen, streams } = serversPerTest();

  test('EventSource-style ?token= opens the stream; the header works too; messages flow', async () => {
    const running = listen({ authMode: 'token' });
    const { url } = running;
    const a = (await (await fetch(`${url}/register/s/a`, { method: 'POST' })).json()).token;
    const b = (await (await fetch(`${url}/register/s/b`, { method: 'POST' })).json()).token;
    const aStream = await openEvents(`${url}/events/s/a?token=${encodeURIComponent(a)}`);
    const bStream = await openEvents(`${url}/events/s/b`, { headers: bearer(b) });
    streams.push(aStream, bStream);
    expect([aStream.status, bStream.status]).toEqual([200, 200]);
    const sent = await fetch(`${url}/message/s/b`, { method: 'POST', headers: bearer(b), body: JSON.stringify(offer('a')) });
    expect(sent.status).toBe(200);
    expect((await aStream.next(ofType('offer'))).json.senderId).toBe('b');
  });

  test("a peer cannot open another peer's stream with its own token", async () => {
    const running = listen({ authMode: 'token' });
    const { url } = running;
    await fetch(`${url}/register/s/a`, { method: 'POST' });
    const b = (await (await fetch(`${url}/register/s/b`, { method: 'POST' })).json()).token;
    const stolen = await fetch(`${url}/events/s/a?token=${b}`);
    expect(stolen.status).toBe(403);
    expect(stolen.headers.get('content-type')).toContain('application/json');
  });
});

describe('tokens never reach a log line', () => {
  test('a whole token-mode flow, refusals and an internal error included, logs no token', async () => {
    const lines: string[] = [];
    const capture = (...args: unknown[]) => void lines.push(args.map(String).join(' '));
    const spies = [spyOn(console, 'log').mockImplementation(capture), spyOn(console, 'error').mockImplementation(capture), spyOn(console, 'warn').mockImplementation(capture)];
    try {
      const issued: string[] = [];
      const { app, signalling } = createApp(defaultConfig({ authMode: 'token' }), {
        newToken: () => {
          const token = `secret-token-${issued.length}-${crypto.randomUUID()}`;
          issued.push(token);
          return token;
        },
        // Every level: a token must not reach even a debug line.
        logger: createLogger({ level: 'debug', format: 'json', clock: { now: Date.now }, write: capture }),
      });
      const a = (await req(app, 'POST', '/register/s/a')).body.token as string;
      const b = (await req(app, 'POST', '/register/s/b')).body.token as string;
      await req(app, 'POST', '/message/s/a', offer('b'), bearer(b));
      await req(app, 'GET', `/events/s/a?token=${b}`);
      await req(app, 'POST', '/register/s/a', undefined, bearer(b));
      await req(app, 'POST', '/message/s/a', '{"type":', bearer(a));
      // Force the one path that logs a request: an unexpected error.
      (signalling as unknown as { send: () => never }).send = () => {
        throw new Error('boom');
      };
      expect((await req(app, 'POST', `/message/s/a?token=${a}`, offer('b'), bearer(a))).status).toBe(500);
      expect(lines.some((l) => l.includes('internal error'))).toBe(true);
      for (const token of issued) expect(lines.join('\n')).not.toContain(token);
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });
});
