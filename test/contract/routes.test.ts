// POST /register, POST /message and the DELETE routes, on one process and on a cluster.
import { expect, test } from 'bun:test';
import { contractBackends, eachBackend } from './backends';

const backends = contractBackends();
const offer = (target?: string) => ({ type: 'offer', payload: { type: 'offer', sdp: 'v=0\r\n' }, target });
/** Ids with every character the id pattern allows. */
const SESSION = 'a.b_c:d@e|f~g-h';
const PEER = 'Z9:|~@.-_';

eachBackend(backends, (backend) => {
  test("POST /register creates the session, then joins it, answering in the seed's shape with the other peers and the ICE servers", async () => {
    const s = await backend.start();
    const first = await s.register('s1', 'device');
    expect(first.status).toBe(200);
    expect(first.body).toEqual({
      message: 'session registered successfully',
      sessionId: 's1',
      peerId: 'device',
      peers: [],
      token: expect.any(String),
      role: 'publisher',
      lastEventId: 0,
      mode: 'mesh',
      // Added to the seed's shape: what GET /iceServers gives this peer.
      iceServers: { urls: ['stun:stun.cloudflare.com:3478'] },
    });
    const second = await s.register('s1', 'browser');
    expect(second.body.peers).toEqual(['device']);
  });

  test('ids with every allowed character work on every route, percent-encoded or not', async () => {
    const s = await backend.start();
    const raw = await s.call('POST', `/register/fleet.7_cam:01@acme|x~y-z/${PEER}`);
    expect(raw.status).toBe(200);
    expect(raw.body.sessionId).toBe('fleet.7_cam:01@acme|x~y-z');
    expect((await s.register(SESSION, PEER)).body).toMatchObject({ sessionId: SESSION, peerId: PEER, peers: [] });
    expect((await s.register(SESSION, 'b')).body.peers).toEqual([PEER]);
    const stream = await s.events(SESSION, PEER);
    expect((await stream.next((e) => e.json.type === 'new-peer')).json).toEqual({ type: 'new-peer', senderId: 'b' });
    expect((await s.message(SESSION, 'b', offer(PEER))).status).toBe(200);
    expect((await stream.next((e) => e.json.type === 'offer')).json.senderId).toBe('b');
    // Session `a.b_c:d@e|f~g` with peer `h` would share keys with session `a.b_c:d@e|f~g-h` if ids were joined with `-`.
    expect((await s.register('a.b_c:d@e|f~g', 'h')).body.peers).toEqual([]);
    expect((await s.message(SESSION, PEER, offer('h'))).body.error).toBe('target_not_found');
    expect((await s.leave(SESSION, PEER)).status).toBe(200);
    expect((await s.message(SESSION, 'b', offer(PEER))).body.error).toBe('target_not_found');
    expect((await s.close(SESSION)).status).toBe(200);
    expect((await s.message('a.b_c:d@e|f~g', 'h', { type: 'x' })).status).toBe(200);
  });

  test.each([
    ['a line break', '/register/s%0A1/p'],
    ['a space', '/register/s%201/p'],
    ['a slash', '/register/s%2F1/p'],
    ['an id of 129 characters', `/register/${'a'.repeat(129)}/p`],
  ])('refuses a session id with %s', async (_, path) => {
    const s = await backend.start();
    const res = await s.call('POST', path);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
    expect(res.body.message).toContain('sessionId');
  });

  test.each([
    ['?mode=sfu', 'query.mode: must be mesh or relay'],
    ['?role=admin', 'query.role: must be publish or view'],
    ['?mode=relay&mode=mesh&role=watch', 'query.role: must be publish or view'],
  ])('refuses the query %s, saying what it may be; the peer is not registered', async (query, message) => {
    const s = await backend.start();
    const res = await s.call('POST', `/register/q/p${query}`);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'invalid_request', message });
    expect((await s.register('q', 'other')).body.peers).toEqual([]);
  });

  test('MAX_SESSIONS answers 429 with Retry-After', async () => {
    const s = await backend.start({ maxSessions: 2 });
    await s.register('a', 'p', { at: 0 });
    await s.register('b', 'p', { at: 1 });
    const res = await s.register('c', 'p', { at: 2 });
    expect(res.status).toBe(429);
    expect(res.body.error).toBe('too_many_sessions');
    expect(res.headers.get('retry-after')).toBeTruthy();
    expect((await s.register('a', 'q')).status).toBe(200);
  });

  test('MAX_PEERS_PER_SESSION answers 409; re-registering a member still works', async () => {
    const s = await backend.start({ maxPeersPerSession: 2 });
    await s.register('s', 'a');
    await s.register('s', 'b');
    const res = await s.register('s', 'c');
    expect(res.status).toBe(409);
    expect(res.body).toEqual({ error: 'session_full', message: expect.stringContaining('2 peers') });
    expect((await s.register('s', 'b')).status).toBe(200);
  });

  test('POST /message: 202 "Message queued" while the target has no open stream', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    await s.register('s', 'b');
    const res = await s.message('s', 'a', offer('b'));
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ message: 'Message queued' });
  });

  test('POST /message: a body without Content-Type (plain fetch) is read as JSON', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    await s.register('s', 'b');
    const response = await fetch(`${s.url(s.home('a'))}/message/s/a`, { method: 'POST', body: new Blob([JSON.stringify(offer('b'))]) });
    expect(response.status).toBe(202);
  });

  test.each([
    ['malformed JSON', '{"type":', 400, 'invalid_json'],
    ['an empty body', '', 400, 'invalid_json'],
    ['no type', { payload: 1, target: 'b' }, 400, 'invalid_request'],
    ['a numeric type', { type: 5, target: 'b' }, 400, 'invalid_request'],
    ['an empty type', { type: '', target: 'b' }, 400, 'invalid_request'],
    ['a type of 65 characters', { type: 'x'.repeat(65), target: 'b' }, 400, 'invalid_request'],
    ['a JSON array', [1, 2], 400, 'invalid_request'],
    ['a target that is not an id', { type: 'offer', target: 'b\nid: 9' }, 400, 'invalid_request'],
    ['the server type ping', { type: 'ping', target: 'b' }, 400, 'reserved_type'],
    ['the server type new-peer', { type: 'new-peer', target: 'b' }, 400, 'reserved_type'],
    ['the server type peer-left', { type: 'peer-left' }, 400, 'reserved_type'],
    ['the server type session-closed', { type: 'session-closed' }, 400, 'reserved_type'],
    ['the sender as target', { type: 'offer', target: 'a' }, 400, 'invalid_request'],
    ['an unknown target', { type: 'offer', target: 'zz' }, 404, 'target_not_found'],
    ['a body over 64 KiB', { type: 'offer', payload: 'x'.repeat(65 * 1024), target: 'b' }, 413, 'payload_too_large'],
  ])('POST /message refuses %s', async (_, body, status, error) => {
    const s = await backend.start();
    await s.register('s', 'a');
    await s.register('s', 'b');
    const res = await s.message('s', 'a', body);
    expect(res.status).toBe(status);
    expect(res.body.error).toBe(error);
    expect(typeof res.body.message).toBe('string');
  });

  test('POST /message: validation errors name the field', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    expect((await s.message('s', 'a', { type: 5 })).body.message).toContain('type');
    expect((await s.message('s', 'a', { type: 'x', target: '' })).body.message).toContain('target');
  });

  test('POST /message: a body just under 64 KiB is accepted', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    await s.register('s', 'b');
    const body = JSON.stringify({ type: 'offer', payload: 'x'.repeat(64 * 1024 - 100), target: 'b' });
    expect(body.length).toBeLessThanOrEqual(64 * 1024);
    expect((await s.message('s', 'a', body)).status).toBe(202);
  });

  test('POST /message: unknown sender or session → 404', async () => {
    const s = await backend.start();
    expect((await s.message('nope', 'a', offer())).body.error).toBe('session_not_found');
    await s.register('s', 'a');
    expect((await s.message('s', 'ghost', offer('a'))).body.error).toBe('peer_not_found');
  });

  test('POST /message: MAX_QUEUE held messages, then 429 queue_full with Retry-After; nothing is dropped silently', async () => {
    const s = await backend.start({ maxQueue: 3 });
    await s.register('s', 'a');
    await s.register('s', 'b');
    for (let i = 0; i < 3; i++) expect((await s.message('s', 'a', offer('b'), { at: i })).status).toBe(202);
    const res = await s.message('s', 'a', offer('b'));
    expect(res.status).toBe(429);
    expect(res.body.error).toBe('queue_full');
    expect(res.headers.get('retry-after')).toBe('1');
  });

  test('POST /message: without a target a message goes to every other peer', async () => {
    const s = await backend.start();
    for (const p of ['a', 'b', 'c']) await s.register('s', p);
    expect((await s.message('s', 'a', { type: 'hello' })).status).toBe(202);
  });

  test('POST /message: a broadcast reaches no one when one target is full', async () => {
    // Held events count server events too: a holds new-peer(b) and new-peer(c), b holds new-peer(c).
    const s = await backend.start({ maxQueue: 2 });
    for (const p of ['a', 'b', 'c']) await s.register('s', p);
    const res = await s.message('s', 'c', { type: 'hello' });
    expect(res.status).toBe(429);
    expect(res.body.message).toContain('peer a');
    // b did not get the broadcast: it still has room for exactly one message.
    expect((await s.message('s', 'a', { type: 'x', target: 'b' })).status).toBe(202);
    expect((await s.message('s', 'a', { type: 'x', target: 'b' })).status).toBe(429);
  });

  test("DELETE /register with an earlier registration's token does not remove the newer one (a reload's late unload)", async () => {
    const s = await backend.start();
    const old = (await s.register('s', 'a', { at: 0 })).body.token;
    const current = (await s.register('s', 'a', { at: 1 })).body.token;
    const late = await s.leave('s', 'a', { at: 2, headers: { authorization: `Bearer ${old}` } });
    expect(late.status).toBe(409);
    expect(late.body.error).toBe('superseded');
    expect((await s.leave('s', 'a', { headers: { authorization: `Bearer ${current}` } })).status).toBe(200);
  });

  test('DELETE /register removes the peer; the last one out removes the session', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    await s.register('s', 'b');
    expect((await s.leave('s', 'a')).status).toBe(200);
    expect((await s.message('s', 'b', offer('a'))).body.error).toBe('target_not_found');
    expect((await s.leave('s', 'a', { at: 2 })).status).toBe(404);
    expect((await s.leave('s', 'b')).status).toBe(200);
    expect((await s.call('GET', '/events/s/b', undefined, {}, 2)).body.error).toBe('session_not_found');
  });

  test('DELETE /session ends it; later requests for it → 404', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    expect((await s.close('s', { at: 1 })).body).toEqual({ message: 'session closed' });
    expect((await s.message('s', 'a', offer())).status).toBe(404);
    expect((await s.close('s', { at: 2 })).status).toBe(404);
  });

  test('GET /events for an unregistered peer is a JSON 404, not a stream', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    const res = await s.call('GET', '/events/s/b', undefined, {}, 1);
    expect(res.status).toBe(404);
    expect(res.body.error).toBe('peer_not_found');
  });

  test('a Last-Event-ID that is not an event id → 400', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    const res = await s.call('GET', '/events/s/a', undefined, { 'last-event-id': 'abc' }, 1);
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('Last-Event-ID');
  });

  test('HEAD /events answers what GET would, without a body and without a stream: the open one is not taken over', async () => {
    const s = await backend.start({ authMode: 'token' });
    const a = await s.register('s', 'a');
    const auth = { authorization: `Bearer ${a.body.token}` };
    const stream = await s.events('s', 'a', { headers: auth });
    const head = await s.call('HEAD', '/events/s/a', undefined, auth, 2);
    expect(head.status).toBe(200);
    expect(head.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(head.body).toBe('');
    // The refusals of GET, on HEAD: the token, the peer, the session, the Last-Event-ID.
    expect((await s.call('HEAD', '/events/s/a', undefined, {}, 2)).status).toBe(401);
    expect((await s.call('HEAD', '/events/s/a', undefined, { authorization: 'Bearer wrong' }, 2)).status).toBe(403);
    expect((await s.call('HEAD', '/events/s/b', undefined, {}, 2)).status).toBe(404);
    expect((await s.call('HEAD', '/events/t/a', undefined, {}, 2)).status).toBe(404);
    expect((await s.call('HEAD', '/events/s/a', undefined, { ...auth, 'last-event-id': 'abc' }, 2)).status).toBe(400);
    // The stream that was open is still the peer's: it gets what is sent to it.
    const b = await s.register('s', 'b');
    expect((await s.message('s', 'b', offer('a'), { headers: { authorization: `Bearer ${b.body.token}` } })).status).toBe(200);
    expect((await stream.next((e) => e.json?.type === 'offer')).json.senderId).toBe('b');
  });

  test('every refusal has the same status, code and message on both stores', async () => {
    const s = await backend.start({ maxSessions: 2, maxPeersPerSession: 2, maxQueue: 2, adminToken: 'admin-token-0123456789' });
    const admin = { authorization: 'Bearer admin-token-0123456789' };
    await s.register('s', 'a');
    await s.register('s', 'b');
    await s.register('t', 'a');
    const refusals: [Promise<{ status: number; body: unknown }>, number, string, string][] = [
      [s.message('nope', 'a', offer('b')), 404, 'session_not_found', 'session nope does not exist'],
      [s.message('s', 'ghost', offer('a')), 404, 'peer_not_found', 'peer ghost is not registered in session s'],
      [s.message('s', 'a', offer('zz')), 404, 'target_not_found', 'peer zz is not in session s'],
      [s.message('s', 'a', offer('a')), 400, 'invalid_request', 'target is the sender itself'],
      [s.message('s', 'a', { type: 'ping', target: 'b' }), 400, 'reserved_type', 'type "ping" is sent by the server only'],
      [s.register('u', 'a'), 429, 'too_many_sessions', `this ${s.differences.scope} holds its limit of 2 sessions`],
      [s.register('s', 'c'), 409, 'session_full', 'session s already has 2 peers'],
      [s.register('s', 'switchboard'), 400, 'reserved_peer', 'peer id "switchboard" is the server\'s own, in every session'],
      [s.leave('s', 'ghost'), 404, 'peer_not_found', 'peer ghost is not registered in session s'],
      [s.close('nope'), 404, 'session_not_found', 'session nope does not exist'],
      [s.admin('POST', '/sessions', { sessionId: 's' }, admin), 409, 'session_exists', 'session s already exists'],
    ];
    for (const [answer, status, error, message] of refusals) expect(await answer).toMatchObject({ status, body: { error, message } });
    // a holds new-peer(b): one more fills it, the next is refused.
    expect((await s.message('s', 'b', { type: 'x', target: 'a' })).status).toBe(202);
    expect(await s.message('s', 'b', { type: 'x', target: 'a' })).toMatchObject({
      status: 429,
      body: { error: 'queue_full', message: 'the target has 2 undelivered events; retry when it reads them' },
    });
    expect(await s.message('s', 'b', { type: 'x' })).toMatchObject({
      status: 429,
      body: { error: 'queue_full', message: 'peer a has too many undelivered events; retry when it reads them' },
    });
  });

  test('the checks come in the same order on both stores', async () => {
    const s = await backend.start();
    await s.register('s', 'b');
    // What the route checks first: the sender's session, then the sender, then the body against the rules.
    expect((await s.message('nope', 'a', { type: 'ping' })).body.error).toBe('session_not_found');
    expect((await s.message('nope', 'a', { type: 'x', target: 'a' })).body.error).toBe('session_not_found');
    expect((await s.message('s', 'ghost', { type: 'ping' })).body.error).toBe('peer_not_found');
    expect((await s.message('s', 'ghost', { type: 'x', target: 'ghost' })).body.error).toBe('peer_not_found');
    expect((await s.message('s', 'b', { type: 'new-peer', target: 'zz' })).body.error).toBe('reserved_type');
    expect((await s.message('s', 'b', { type: 'ping', target: 'b' })).body.error).toBe('reserved_type');
    const full = await backend.start({ maxSessions: 1, maxPeersPerSession: 1 });
    await full.register('s', 'b');
    // The reserved id before the caps; a bad mode before the caps; the session cap before the session's own.
    expect((await full.register('t', 'switchboard')).body.error).toBe('reserved_peer');
    expect((await full.register('s', 'switchboard')).body.error).toBe('reserved_peer');
    expect((await full.register('t', 'c', { query: 'mode=sfu' })).body.error).toBe('invalid_request');
    expect((await full.register('t', 'c')).body.error).toBe('too_many_sessions');
    expect((await full.register('s', 'c')).body.error).toBe('session_full');
  });

  test('what the address holds is checked before the credentials: a takeover without its token from an address at its cap is a 429', async () => {
    const s = await backend.start({ authMode: 'token', maxPeersPerIp: 1, trustProxy: 1, registerRatePerMin: 0 });
    const from = (ip: string) => ({ 'x-forwarded-for': ip });
    expect((await s.register('s', 'a', { headers: from('10.0.0.2') })).status).toBe(200);
    expect((await s.register('s', 'x', { headers: from('10.0.0.1') })).status).toBe(200);
    const takeover = await s.register('s', 'a', { headers: from('10.0.0.1'), at: 2 });
    expect(takeover).toMatchObject({ status: 429, body: { error: 'too_many_peers' } });
    // Without the cap in the way, the credentials refuse it.
    const credentials = await s.register('s', 'a', { headers: from('10.0.0.3'), at: 1 });
    expect(credentials.status).toBe(401);
    expect(credentials.body.message).toContain('taking it over needs its token');
    // A newcomer from the address at its cap is refused by the cap.
    expect((await s.register('s', 'y', { headers: from('10.0.0.1') })).body.error).toBe('too_many_peers');
  });
});
