import { describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import { defaultConfig, req } from '../helpers';

const offer = (target?: string) => ({ type: 'offer', payload: { type: 'offer', sdp: 'v=0\r\n' }, target });

describe('POST /register/:sessionId/:peerId', () => {
  test("creates the session, then joins it, answering in the seed's shape with the other peers", async () => {
    const { app } = createApp(defaultConfig());
    const first = await req(app, 'POST', '/register/s1/device');
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
    });
    const second = await req(app, 'POST', '/register/s1/browser');
    expect(second.body.peers).toEqual(['device']);
  });

  test('accepts every character the id pattern allows, percent-encoded or not', async () => {
    const { app } = createApp(defaultConfig());
    const id = 'fleet.7_cam:01@acme|x~y-z';
    const res = await req(app, 'POST', `/register/${encodeURIComponent(id)}/${id}`);
    expect(res.status).toBe(200);
    expect(res.body.sessionId).toBe(id);
  });

  test.each([
    ['a line break', '/register/s%0A1/p'],
    ['a space', '/register/s%201/p'],
    ['a slash', '/register/s%2F1/p'],
    ['an id of 129 characters', `/register/${'a'.repeat(129)}/p`],
  ])('refuses a session id with %s', async (_, path) => {
    const res = await req(createApp(defaultConfig()).app, 'POST', path);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
    expect(res.body.message).toContain('sessionId');
  });

  test('MAX_SESSIONS answers 429 with Retry-After', async () => {
    const { app } = createApp(defaultConfig({ maxSessions: 2 }));
    await req(app, 'POST', '/register/a/p');
    await req(app, 'POST', '/register/b/p');
    const res = await req(app, 'POST', '/register/c/p');
    expect(res.status).toBe(429);
    expect(res.body.error).toBe('too_many_sessions');
    expect(res.headers.get('retry-after')).toBeTruthy();
    expect((await req(app, 'POST', '/register/a/q')).status).toBe(200);
  });

  test('MAX_PEERS_PER_SESSION answers 409; re-registering a member still works', async () => {
    const { app } = createApp(defaultConfig({ maxPeersPerSession: 2 }));
    await req(app, 'POST', '/register/s/a');
    await req(app, 'POST', '/register/s/b');
    const res = await req(app, 'POST', '/register/s/c');
    expect(res.status).toBe(409);
    expect(res.body).toEqual({ error: 'session_full', message: expect.stringContaining('2 peers') });
    expect((await req(app, 'POST', '/register/s/b')).status).toBe(200);
  });
});

describe('POST /message/:sessionId/:peerId', () => {
  test('202 "Message queued" while the target has no open stream', async () => {
    const { app } = createApp(defaultConfig());
    await req(app, 'POST', '/register/s/a');
    await req(app, 'POST', '/register/s/b');
    const res = await req(app, 'POST', '/message/s/a', offer('b'));
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ message: 'Message queued' });
  });

  test('a body without Content-Type (plain fetch) is read as JSON', async () => {
    const { app } = createApp(defaultConfig());
    await req(app, 'POST', '/register/s/a');
    await req(app, 'POST', '/register/s/b');
    const response = await app.handle(new Request('http://localhost/message/s/a', { method: 'POST', body: new Blob([JSON.stringify(offer('b'))]) }));
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
  ])('refuses %s', async (_, body, status, error) => {
    const { app } = createApp(defaultConfig());
    await req(app, 'POST', '/register/s/a');
    await req(app, 'POST', '/register/s/b');
    const res = await req(app, 'POST', '/message/s/a', body);
    expect(res.status).toBe(status);
    expect(res.body.error).toBe(error);
    expect(typeof res.body.message).toBe('string');
  });

  test('validation errors name the field', async () => {
    const { app } = createApp(defaultConfig());
    await req(app, 'POST', '/register/s/a');
    expect((await req(app, 'POST', '/message/s/a', { type: 5 })).body.message).toContain('type');
    expect((await req(app, 'POST', '/message/s/a', { type: 'x', target: '' })).body.message).toContain('target');
  });

  test('a body just under 64 KiB is accepted', async () => {
    const { app } = createApp(defaultConfig());
    await req(app, 'POST', '/register/s/a');
    await req(app, 'POST', '/register/s/b');
    const body = JSON.stringify({ type: 'offer', payload: 'x'.repeat(64 * 1024 - 100), target: 'b' });
    expect(body.length).toBeLessThanOrEqual(64 * 1024);
    expect((await req(app, 'POST', '/message/s/a', body)).status).toBe(202);
  });

  test('a chunked body over 64 KiB is refused without reading it all', async () => {
    const { app } = createApp(defaultConfig());
    await req(app, 'POST', '/register/s/a');
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        controller.enqueue(new Uint8Array(16 * 1024).fill(32));
        if (pulled > 1000) controller.close();
      },
    });
    const response = await app.handle(new Request('http://localhost/message/s/a', { method: 'POST', body, duplex: 'half' } as RequestInit));
    expect(response.status).toBe(413);
    expect(pulled).toBeLessThan(10);
  });

  test('unknown sender or session → 404', async () => {
    const { app } = createApp(defaultConfig());
    expect((await req(app, 'POST', '/message/nope/a', offer())).body.error).toBe('session_not_found');
    await req(app, 'POST', '/register/s/a');
    expect((await req(app, 'POST', '/message/s/ghost', offer('a'))).body.error).toBe('peer_not_found');
  });

  test('MAX_QUEUE held messages, then 429 queue_full with Retry-After; nothing is dropped silently', async () => {
    const { app } = createApp(defaultConfig({ maxQueue: 3 }));
    await req(app, 'POST', '/register/s/a');
    await req(app, 'POST', '/register/s/b');
    for (let i = 0; i < 3; i++) expect((await req(app, 'POST', '/message/s/a', offer('b'))).status).toBe(202);
    const res = await req(app, 'POST', '/message/s/a', offer('b'));
    expect(res.status).toBe(429);
    expect(res.body.error).toBe('queue_full');
    expect(res.headers.get('retry-after')).toBe('1');
  });

  test('without a target a message goes to every other peer', async () => {
    const { app } = createApp(defaultConfig());
    await req(app, 'POST', '/register/s/a');
    await req(app, 'POST', '/register/s/b');
    await req(app, 'POST', '/register/s/c');
    expect((await req(app, 'POST', '/message/s/a', { type: 'hello' })).status).toBe(202);
  });

  test('a broadcast reaches no one when one target is full', async () => {
    // Held events count server events too: a holds new-peer(b) and new-peer(c), b holds new-peer(c).
    const { app } = createApp(defaultConfig({ maxQueue: 2 }));
    for (const p of ['a', 'b', 'c']) await req(app, 'POST', `/register/s/${p}`);
    const res = await req(app, 'POST', '/message/s/c', { type: 'hello' });
    expect(res.status).toBe(429);
    expect(res.body.message).toContain('peer a');
    // b did not get the broadcast: it still has room for exactly one message.
    expect((await req(app, 'POST', '/message/s/a', { type: 'x', target: 'b' })).status).toBe(202);
    expect((await req(app, 'POST', '/message/s/a', { type: 'x', target: 'b' })).status).toBe(429);
  });
});

describe('DELETE routes', () => {
  test("a leave carrying an earlier registration's token does not remove the newer one (a reload's late unload)", async () => {
    const { app } = createApp(defaultConfig());
    const old = (await req(app, 'POST', '/register/s/a')).body.token;
    const current = (await req(app, 'POST', '/register/s/a')).body.token;
    const late = await req(app, 'DELETE', '/register/s/a', undefined, { authorization: `Bearer ${old}` });
    expect(late.status).toBe(409);
    expect(late.body.error).toBe('superseded');
    expect((await req(app, 'DELETE', '/register/s/a', undefined, { authorization: `Bearer ${current}` })).status).toBe(200);
  });

  test('DELETE /register removes the peer; the last one out removes the session', async () => {
    const { app } = createApp(defaultConfig());
    await req(app, 'POST', '/register/s/a');
    await req(app, 'POST', '/register/s/b');
    expect((await req(app, 'DELETE', '/register/s/a')).status).toBe(200);
    expect((await req(app, 'POST', '/message/s/b', offer('a'))).body.error).toBe('target_not_found');
    expect((await req(app, 'DELETE', '/register/s/a')).status).toBe(404);
    expect((await req(app, 'DELETE', '/register/s/b')).status).toBe(200);
    expect((await req(app, 'GET', '/events/s/b')).body.error).toBe('session_not_found');
  });

  test('DELETE /session ends it; later requests for it → 404', async () => {
    const { app } = createApp(defaultConfig());
    await req(app, 'POST', '/register/s/a');
    expect((await req(app, 'DELETE', '/session/s')).body).toEqual({ message: 'session closed' });
    expect((await req(app, 'POST', '/message/s/a', offer())).status).toBe(404);
    expect((await req(app, 'DELETE', '/session/s')).status).toBe(404);
  });
});

describe('every other error', () => {
  test('an unknown route is a JSON 404', async () => {
    const res = await req(createApp(defaultConfig()).app, 'GET', '/nope');
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: 'not_found', message: 'no route for GET /nope' });
  });

  test('GET /events for an unregistered peer is a JSON 404, not a stream', async () => {
    const { app } = createApp(defaultConfig());
    await req(app, 'POST', '/register/s/a');
    const res = await req(app, 'GET', '/events/s/b');
    expect(res.status).toBe(404);
    expect(res.body.error).toBe('peer_not_found');
  });

  test('a Last-Event-ID that is not an event id → 400', async () => {
    const { app } = createApp(defaultConfig());
    await req(app, 'POST', '/register/s/a');
    const res = await req(app, 'GET', '/events/s/a', undefined, { 'last-event-id': 'abc' });
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('Last-Event-ID');
  });
});

describe('CORS', () => {
  test('by default any origin, never with credentials', async () => {
    const res = await req(createApp(defaultConfig()).app, 'GET', '/iceServers', undefined, { origin: 'https://dash.example' });
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
  });

  test('CORS_ORIGINS narrows it to the list', async () => {
    const { app } = createApp(defaultConfig({ corsOrigins: ['https://dash.example'] }));
    const allowed = await req(app, 'GET', '/iceServers', undefined, { origin: 'https://dash.example' });
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://dash.example');
    const other = await req(app, 'GET', '/iceServers', undefined, { origin: 'https://evil.example' });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  test('a preflight for POST /message is answered', async () => {
    const res = await req(createApp(defaultConfig()).app, 'OPTIONS', '/message/s/a', undefined, {
      origin: 'https://dash.example',
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type',
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('content-type');
  });
});
