// Relay sessions in one process: modes, the engine's lazy load, and its connections following the peers.
// What both stores share (the server's offers over each peer's stream, who sees whom, one publisher,
// what switchboard takes) runs on both in test/contract/relay.test.ts and test/contract/modes.test.ts.
import { describe, expect, test } from 'bun:test';
import { appsPerTest, post, req, serversPerTest } from '../helpers';
import { ofType, openEvents } from '../sse-client';

/** Apps of this file: relay sessions open server-side connections, closed after each test. */
const app = appsPerTest();

describe('modes', () => {
  test('the first register picks the mode; later ones join it, and a different one is a 409', async () => {
    const a = app();
    const first = await req(a.app, 'POST', '/register/r/dev?mode=relay');
    expect(first.body).toMatchObject({ mode: 'relay', role: 'publisher', peers: [] });
    expect((await req(a.app, 'POST', '/register/r/v1')).body).toMatchObject({ mode: 'relay', role: 'viewer', peers: ['dev'] });
    expect((await req(a.app, 'POST', '/register/r/v2?mode=relay')).body.mode).toBe('relay');
    const conflict = await req(a.app, 'POST', '/register/r/v3?mode=mesh');
    expect(conflict.status).toBe(409);
    expect(conflict.body).toEqual({ error: 'mode_conflict', message: 'session r is a relay session; it cannot be joined with mode=mesh' });
  });

  test('the admin API creates relay sessions and shows the mode', async () => {
    const a = app({ adminToken: 'a'.repeat(16), authMode: 'token' });
    const admin = { authorization: `Bearer ${'a'.repeat(16)}` };
    const created = await req(
      a.app,
      'POST',
      '/sessions',
      {
        sessionId: 'cam',
        mode: 'relay',
        peers: [
          { peerId: 'dev', role: 'publisher' },
          { peerId: 'ops', role: 'viewer' },
        ],
      },
      admin,
    );
    expect(created.body).toMatchObject({ sessionId: 'cam', mode: 'relay' });
    expect((await req(a.app, 'GET', '/sessions/cam', undefined, admin)).body.mode).toBe('relay');
    const [dev, ops] = created.body.peers as { token: string }[];
    expect((await req(a.app, 'POST', '/register/cam/dev', undefined, { authorization: `Bearer ${dev?.token}` })).body).toMatchObject({ mode: 'relay', role: 'publisher' });
    // The invite says viewer: asking to publish is refused, asking to view is what it is.
    const refused = await req(a.app, 'POST', '/register/cam/ops?role=publish', undefined, { authorization: `Bearer ${ops?.token}` });
    expect(refused.status).toBe(403);
    expect((await req(a.app, 'POST', '/register/cam/ops?role=view', undefined, { authorization: `Bearer ${ops?.token}` })).body.role).toBe('viewer');
    const invalid = await req(a.app, 'POST', '/sessions', { mode: 'sfu' }, admin);
    expect(invalid.status).toBe(400);
  });
});

describe('the relay engine', () => {
  test('loads with the first relay session, not before; meanwhile what peers send switchboard is checked at once', async () => {
    const a = app();
    const relay = a.relay;
    if (!relay) throw new Error('a server without REDIS_URL has a relay');
    expect((await req(a.app, 'POST', '/register/m/p')).body.mode).toBe('mesh');
    expect(relay.loaded).toBe(false);
    expect((await req(a.app, 'POST', '/register/r/dev?mode=relay')).status).toBe(200);
    const bad = await req(a.app, 'POST', '/message/r/dev', { target: 'switchboard', type: 'offer', payload: {} });
    expect(bad.status).toBe(400);
    await relay.ready;
    expect(relay.loaded).toBe(true);
    expect(relay.stats()).toMatchObject({ sessions: 1 });
  });
});

describe('over a real listener', () => {
  const { listen, streams } = serversPerTest();
  const events = async (url: string) => {
    const s = await openEvents(url);
    streams.push(s);
    return s;
  };

  test("the relay's connections follow the peers: made once a stream opens, gone with the peer and the session", async () => {
    const running = listen();
    const { url } = running;
    await post(`${url}/register/live/cam?mode=relay`);
    const cam = await events(`${url}/events/live/cam`);
    await cam.next(ofType('offer', 'switchboard'));
    await post(`${url}/register/live/v1`);
    const v1 = await events(`${url}/events/live/v1`);
    await v1.next(ofType('offer', 'switchboard'));
    // Registered, v2 holds no connection yet: that waits for its stream.
    await post(`${url}/register/live/v2`);
    expect(running.relay?.stats()).toMatchObject({ sessions: 1, viewers: 1, connections: 2 });
    const v2 = await events(`${url}/events/live/v2`);
    await v2.next(ofType('offer', 'switchboard'));
    expect(running.relay?.stats()).toMatchObject({ sessions: 1, viewers: 2, connections: 3 });
    await fetch(`${url}/register/live/v2`, { method: 'DELETE' });
    expect(running.relay?.stats()).toMatchObject({ sessions: 1, viewers: 1 });
    // The session ends with its last peer, and the relay's connections with it.
    await fetch(`${url}/session/live`, { method: 'DELETE' });
    expect(running.relay?.stats()).toMatchObject({ sessions: 0, viewers: 0 });
  });
});
