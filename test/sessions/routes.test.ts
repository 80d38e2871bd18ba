// What the session routes do on their own, in one process through app.handle: the store-dependent
// scenarios run on both stores in test/contract/.
import { describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import { defaultConfig, req } from '../helpers';

describe('POST /message/:sessionId/:peerId', () => {
  test('its 200 and 202 are JSON answers like every other: content type, CORS, request id', async () => {
    const { app } = createApp(defaultConfig());
    await req(app, 'POST', '/register/s/a');
    await req(app, 'POST', '/register/s/b');
    const headers = { origin: 'https://dash.example', 'x-request-id': 'r-1' };
    const queued = await req(app, 'POST', '/message/s/a', { type: 'offer', target: 'b', payload: { sdp: 'v=0' } }, headers);
    expect(queued).toMatchObject({ status: 202, body: { message: 'Message queued' } });
    const stream = await app.handle(new Request('http://localhost/events/s/b'));
    const sent = await req(app, 'POST', '/message/s/a', { type: 'offer', target: 'b', payload: { sdp: 'v=0' } }, headers);
    expect(sent).toMatchObject({ status: 200, body: { message: 'Message sent' } });
    for (const answer of [queued, sent]) {
      expect(answer.headers.get('content-type')).toBe('application/json;charset=utf-8');
      expect(answer.headers.get('access-control-allow-origin')).toBe('*');
      expect(answer.headers.get('x-request-id')).toBe('r-1');
    }
    await stream.body?.cancel();
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
});

describe('every other error', () => {
  test('an unknown route is a JSON 404', async () => {
    const res = await req(createApp(defaultConfig()).app, 'GET', '/nope');
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: 'not_found', message: 'no route for GET /nope' });
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
