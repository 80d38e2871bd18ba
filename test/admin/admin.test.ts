import { describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import type { Config } from '../../src/config';
import { defaultConfig, ManualClock, req, serversPerTest } from '../helpers';
import { openEvents } from '../sse-client';

const ADMIN = 'admin-token-for-tests-0123';
const admin = { authorization: `Bearer ${ADMIN}` };
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function adminApp(config: Partial<Config> = {}, clock = new ManualClock()) {
  let n = 0;
  return createApp(defaultConfig({ authMode: 'token', adminToken: ADMIN, ...config }), { clock, newToken: () => `tok-${++n}`, newId: () => `gen-${++n}` }).app;
}

describe('without ADMIN_TOKEN', () => {
  test.each([
    ['POST', '/sessions'],
    ['GET', '/sessions'],
    ['GET', '/sessions/s'],
  ])('%s %s answers 403 admin_disabled, saying how to enable it', async (method, path) => {
    const res = await req(createApp(defaultConfig()).app, method, path, method === 'POST' ? {} : undefined, admin);
    expect(res.status).toBe(403);
    expect(res.body).toEqual({ error: 'admin_disabled', message: expect.stringContaining('ADMIN_TOKEN') });
  });
});

describe('the admin token', () => {
  test('missing → 401, wrong → 403, before the body is looked at', async () => {
    const app = adminApp();
    expect((await req(app, 'GET', '/sessions')).status).toBe(401);
    expect((await req(app, 'GET', '/sessions', undefined, bearer(`${ADMIN}x`))).status).toBe(403);
    expect((await req(app, 'POST', '/sessions', '{not json', bearer('wrong-token-000000000'))).status).toBe(403);
    expect((await req(app, 'POST', '/sessions', '{not json', admin)).status).toBe(400);
  });

  test('a peer token is not an admin token', async () => {
    const app = adminApp();
    const { token } = (await req(app, 'POST', '/register/s/a')).body;
    expect((await req(app, 'GET', '/sessions', undefined, bearer(token))).status).toBe(403);
  });
});

describe('POST /sessions', () => {
  test('creates a session with an allow-list and returns one join token per peer', async () => {
    const app = adminApp();
    const res = await req(
      app,
      'POST',
      '/sessions',
      {
        sessionId: 'live-1',
        peers: [
          { peerId: 'dashcam-7', role: 'publisher' },
          { peerId: 'ops-1', role: 'viewer' },
        ],
      },
      admin,
    );
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
    const app = adminApp();
    const { body } = await req(
      app,
      'POST',
      '/sessions',
      {
        sessionId: 'live-1',
        peers: [
          { peerId: 'dashcam-7', role: 'publisher' },
          { peerId: 'ops-1', role: 'viewer' },
        ],
      },
      admin,
    );
    const [device, viewer] = body.peers;
    expect((await req(app, 'POST', '/register/live-1/stranger')).status).toBe(403);
    expect((await req(app, 'POST', '/register/live-1/dashcam-7')).status).toBe(401);
    expect((await req(app, 'POST', '/register/live-1/dashcam-7', undefined, bearer(viewer.token))).status).toBe(403);
    const joined = await req(app, 'POST', '/register/live-1/ops-1', undefined, bearer(viewer.token));
    expect(joined.status).toBe(200);
    expect(joined.body.role).toBe('viewer');
    // The viewer joined first, yet the device keeps the publisher role it was given.
    const dev = await req(app, 'POST', '/register/live-1/dashcam-7', undefined, bearer(device.token));
    expect(dev.body.role).toBe('publisher');
    // The join token keeps working for that peer (a device that rebooted), and stays distinct from the peer token.
    expect((await req(app, 'POST', '/register/live-1/dashcam-7', undefined, bearer(device.token))).status).toBe(200);
    expect(dev.body.token).not.toBe(device.token);
  });

  test('with no body: a generated id, anyone may join (token mode), the first as publisher', async () => {
    const app = adminApp();
    const res = await req(app, 'POST', '/sessions', undefined, admin);
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ sessionId: expect.stringMatching(/^gen-/), idleS: 3600, mode: 'mesh', peers: [] });
    expect((await req(app, 'POST', `/register/${res.body.sessionId}/x`)).body.role).toBe('publisher');
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
    const app = adminApp({ maxPeersPerSession: 2 });
    await req(app, 'POST', '/sessions', { sessionId: 'taken' }, admin);
    const res = await req(app, 'POST', '/sessions', body, admin);
    expect(res.status).toBe(status);
    expect(res.body.error).toBe(error);
  });

  test('the session outlives its last peer, and ends after idleS without any', async () => {
    const clock = new ManualClock();
    const app = adminApp({}, clock);
    const { body } = await req(app, 'POST', '/sessions', { sessionId: 'live', idleS: 60, peers: [{ peerId: 'd', role: 'publisher' }] }, admin);
    clock.advance(59_000);
    const joined = await req(app, 'POST', '/register/live/d', undefined, bearer(body.peers[0].token));
    clock.advance(10_000);
    expect((await req(app, 'GET', '/sessions/live', undefined, admin)).body.peers).toHaveLength(1);
    await req(app, 'DELETE', '/register/live/d', undefined, bearer(joined.body.token));
    // Empty again: the device can come back with its join token until idleS has passed.
    clock.advance(59_000);
    expect((await req(app, 'POST', '/register/live/d', undefined, bearer(body.peers[0].token))).status).toBe(200);
    expect((await req(app, 'DELETE', '/session/live', undefined, admin)).status).toBe(200);
    await req(app, 'POST', '/sessions', { sessionId: 'idle', idleS: 60 }, admin);
    clock.advance(60_000);
    expect((await req(app, 'GET', '/sessions/idle', undefined, admin)).status).toBe(404);
  });
});

describe('GET /sessions and /sessions/:id', () => {
  const { listen, streams } = serversPerTest();

  test('list sessions, their peers, roles and whether each stream is open', async () => {
    const running = listen({ authMode: 'token', adminToken: ADMIN });
    const { url } = running;
    const a = (await (await fetch(`${url}/register/s/a`, { method: 'POST' })).json()).token;
    await fetch(`${url}/register/s/b`, { method: 'POST' });
    await fetch(`${url}/sessions`, { method: 'POST', headers: admin, body: JSON.stringify({ sessionId: 'planned', peers: [{ peerId: 'd', role: 'publisher' }] }) });
    streams.push(await openEvents(`${url}/events/s/a?token=${a}`));

    const list = await (await fetch(`${url}/sessions`, { headers: admin })).json();
    expect(list.sessions).toEqual([
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
    const one = await fetch(`${url}/sessions/s`, { headers: admin });
    expect((await one.json()).peers[0]).toEqual({ peerId: 'a', role: 'publisher', streaming: true });
    expect((await fetch(`${url}/sessions/nope`, { headers: admin })).status).toBe(404);
  });

  test('no token ever appears in the admin views', async () => {
    const app = adminApp();
    await req(app, 'POST', '/sessions', { sessionId: 'x', peers: [{ peerId: 'd', role: 'publisher' }] }, admin);
    await req(app, 'POST', '/register/y/a');
    const text = JSON.stringify((await req(app, 'GET', '/sessions', undefined, admin)).body);
    expect(text).not.toContain('tok-');
    expect(text).not.toContain('Hash');
  });
});
