// Relay sessions as the signalling API shows them: modes, roles, the reserved id, what peers see of each
// other, and the server's own offer arriving over a peer's event stream.
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
    expect((await req(a.app, 'POST', '/register/m/p')).body.mode).toBe('mesh');
    expect((await req(a.app, 'POST', '/register/m/q?mode=relay')).status).toBe(409);
  });

  test('a mode or role that is not one of the names is a 400 naming the field', async () => {
    const a = app();
    for (const query of ['mode=sfu', 'role=publisher']) {
      const res = await req(a.app, 'POST', `/register/s/p?${query}`);
      expect(res.status).toBe(400);
      expect(res.body.message).toContain(query.split('=')[0]);
    }
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

describe('the reserved peer id', () => {
  test('switchboard cannot register, in a relay session or any other, nor be invited', async () => {
    const a = app({ adminToken: 'a'.repeat(16) });
    await req(a.app, 'POST', '/register/r/dev?mode=relay');
    for (const path of ['/register/r/switchboard', '/register/mesh/switchboard', '/register/new/switchboard?mode=relay']) {
      const res = await req(a.app, 'POST', path);
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('reserved_peer');
    }
    expect((await req(a.app, 'GET', '/register/new/x')).status).toBe(404);
    const invite = await req(a.app, 'POST', '/sessions', { peers: [{ peerId: 'switchboard', role: 'viewer' }] }, { authorization: `Bearer ${'a'.repeat(16)}` });
    expect(invite.status).toBe(400);
    expect(invite.body.error).toBe('reserved_peer');
  });

  test('in a mesh session switchboard is no target', async () => {
    const a = app();
    await req(a.app, 'POST', '/register/m/a');
    const res = await req(a.app, 'POST', '/message/m/a', { type: 'answer', payload: { type: 'answer', sdp: 'v=0\r\n' }, target: 'switchboard' });
    expect(res.status).toBe(404);
    expect(res.body.error).toBe('target_not_found');
  });
});

describe('roles', () => {
  test('open mode: ?role= decides; without it the first in publishes', async () => {
    const a = app();
    expect((await req(a.app, 'POST', '/register/s/watcher?role=view')).body.role).toBe('viewer');
    expect((await req(a.app, 'POST', '/register/s/cam?role=publish')).body.role).toBe('publisher');
    expect((await req(a.app, 'POST', '/register/t/first')).body.role).toBe('publisher');
    expect((await req(a.app, 'POST', '/register/t/second')).body.role).toBe('viewer');
  });

  test('a relay session has one publisher: a second is a 409 until the first leaves', async () => {
    const a = app();
    await req(a.app, 'POST', '/register/r/cam?mode=relay&role=publish');
    const second = await req(a.app, 'POST', '/register/r/cam2?role=publish');
    expect(second.status).toBe(409);
    expect(second.body.error).toBe('publisher_exists');
    // The same id registering again is the publisher coming back, not a second one.
    expect((await req(a.app, 'POST', '/register/r/cam?role=publish')).status).toBe(200);
    await req(a.app, 'POST', '/register/r/v1');
    await req(a.app, 'DELETE', '/register/r/cam');
    expect((await req(a.app, 'POST', '/register/r/cam2?role=publish')).body.role).toBe('publisher');
  });

  test('token mode: publishing may be asked for while the session has no publisher', async () => {
    const a = app({ authMode: 'token' });
    expect((await req(a.app, 'POST', '/register/s/v1?role=view')).body.role).toBe('viewer');
    expect((await req(a.app, 'POST', '/register/s/cam?role=publish')).body.role).toBe('publisher');
    const refused = await req(a.app, 'POST', '/register/s/v2?role=publish');
    expect(refused.status).toBe(403);
    expect(refused.body.message).toContain('has publisher cam');
  });
});

describe('messages in a relay session', () => {
  test('switchboard takes answers, candidates and restarts, checked at once; peers do not signal each other', async () => {
    const a = app();
    await req(a.app, 'POST', '/register/r/cam?mode=relay');
    await req(a.app, 'POST', '/register/r/v1');
    const send = (body: unknown) => req(a.app, 'POST', '/message/r/v1', body);
    expect(
      (await send({ type: 'ice-candidate', target: 'switchboard', payload: { candidate: 'candidate:1 1 udp 2122260223 192.0.2.9 50000 typ host', sdpMid: '0', sdpMLineIndex: 0 } }))
        .status,
    ).toBe(200);
    expect((await send({ type: 'ice-candidate', target: 'switchboard', payload: null })).status).toBe(200);
    for (const [body, words] of [
      [{ type: 'answer', target: 'switchboard', payload: { type: 'answer' } }, 'payload.sdp'],
      [{ type: 'ice-candidate', target: 'switchboard', payload: { candidate: 7 } }, 'payload.candidate'],
      [{ type: 'offer', target: 'switchboard', payload: { type: 'offer', sdp: 'v=0\r\n' } }, 'the server makes the offers'],
      [{ type: 'offer', target: 'cam', payload: { type: 'offer', sdp: 'v=0\r\n' } }, 'go to target "switchboard" only'],
      [{ type: 'ice-candidate', payload: {} }, 'go to target "switchboard" only'],
    ] as const) {
      const res = await send(body);
      expect(res.status).toBe(400);
      expect(res.body.message).toContain(words);
    }
    // Messages of the application's own still reach the other peers.
    expect((await send({ type: 'chat', target: 'cam', payload: 'hi' })).status).toBe(202);
  });
});

describe('over a real listener', () => {
  const { listen, streams } = serversPerTest();
  const events = async (url: string) => {
    const s = await openEvents(url);
    streams.push(s);
    return s;
  };

  test("the server's offer comes over each peer's own stream; viewers see only the publisher come and go", async () => {
    const running = listen();
    const { url } = running;
    expect((await post(`${url}/register/live/cam?mode=relay`)).body).toMatchObject({ mode: 'relay', role: 'publisher' });
    const cam = await events(`${url}/events/live/cam`);
    const offer = await cam.next(ofType('offer', 'switchboard'));
    const sdp = (offer.json.payload as { type: string; sdp: string }).sdp;
    expect((offer.json.payload as { type: string }).type).toBe('offer');
    // The publisher is offered receive-only sections: it answers with what it sends.
    expect(sdp.match(/^m=(video|audio)/gm)).toEqual(['m=video', 'm=audio']);
    expect(sdp.match(/^a=recvonly/gm)?.length).toBe(2);
    expect(sdp).toContain('a=ice-lite');
    const candidate = await cam.next(ofType('ice-candidate', 'switchboard'));
    expect((candidate.json.payload as { candidate: string }).candidate).toMatch(/^candidate:\S+ 1 udp \d+ \S+ \d+ typ host/);

    expect((await post(`${url}/register/live/v1`)).body.peers).toEqual(['cam']);
    const v1 = await events(`${url}/events/live/v1`);
    const viewerOffer = ((await v1.next(ofType('offer', 'switchboard'))).json.payload as { sdp: string }).sdp;
    expect(viewerOffer.match(/^a=sendonly/gm)?.length).toBe(2);
    expect(viewerOffer).toMatch(/^a=rtpmap:96 VP8\/90000/m);
    expect(viewerOffer).toMatch(/^a=rtpmap:102 H264\/90000/m);

    // A second viewer: nobody is told, and it does not see v1.
    expect((await post(`${url}/register/live/v2`)).body.peers).toEqual(['cam']);
    // Registered, v2 holds no connection yet: that waits for its stream.
    expect(running.relay?.stats()).toMatchObject({ sessions: 1, viewers: 1, connections: 2 });
    const v2 = await events(`${url}/events/live/v2`);
    await v2.next(ofType('offer', 'switchboard'));
    expect(running.relay?.stats()).toMatchObject({ sessions: 1, viewers: 2, connections: 3 });
    // The publisher leaves: viewers get peer-left, and its return new-peer; the publisher hears of no viewer.
    expect((await fetch(`${url}/register/live/cam`, { method: 'DELETE' })).status).toBe(200);
    await v1.next(ofType('peer-left', 'cam'));
    await post(`${url}/register/live/cam?role=publish`);
    await v1.next(ofType('new-peer', 'cam'));
    const cam2 = await events(`${url}/events/live/cam`);
    await cam2.next(ofType('offer', 'switchboard'));
    await fetch(`${url}/register/live/v2`, { method: 'DELETE' });
    expect(running.relay?.stats()).toMatchObject({ sessions: 1, viewers: 1 });
    const told = [...v1.events, ...cam2.events].map((e) => [e.json.type, e.json.senderId]).filter(([type]) => type === 'new-peer' || type === 'peer-left');
    expect(told).toEqual([
      ['peer-left', 'cam'],
      ['new-peer', 'cam'],
    ]);

    // The session ends with its last peer, and the relay's connections with it.
    await fetch(`${url}/session/live`, { method: 'DELETE' });
    expect(running.relay?.stats()).toMatchObject({ sessions: 0, viewers: 0 });
  });
});
