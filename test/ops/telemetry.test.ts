import { describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import type { Config } from '../../src/config';
import { createLogger, type LogLevel } from '../../src/log/logger';
import { defaultConfig, ManualClock, post, req, serversPerTest, startServer } from '../helpers';
import { ofType, openEvents } from '../sse-client';

/** An app whose log lines land in `lines`, with request ids req-1, req-2, … */
function logged(level: LogLevel = 'debug', config: Partial<Config> = {}) {
  const lines: string[] = [];
  let n = 0;
  const deps = {
    clock: new ManualClock(),
    logger: createLogger({ level, format: 'json', clock: new ManualClock(), write: (line) => lines.push(line) }),
    requestId: () => `req-${++n}`,
  };
  const entries = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { config: defaultConfig(config), deps, lines, entries };
}

/** Request log lines are written just after the response: let them land. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('request ids', () => {
  test('a request without one gets a new one, echoed in the response, errors and 404s included', async () => {
    const { config, deps } = logged();
    const { app } = createApp(config, deps);
    expect((await req(app, 'POST', '/register/s/a')).headers.get('x-request-id')).toBe('req-1');
    expect((await req(app, 'POST', '/message/s/a', { target: 'zz', type: 'offer' })).headers.get('x-request-id')).toBe('req-2');
    expect((await req(app, 'POST', '/message/s/a', '{bad')).headers.get('x-request-id')).toBe('req-3');
    expect((await req(app, 'GET', '/nowhere')).headers.get('x-request-id')).toBe('req-4');
    expect((await req(app, 'OPTIONS', '/message/s/a', undefined, { origin: 'https://a.example', 'access-control-request-method': 'POST' })).headers.get('x-request-id')).toBe(
      'req-5',
    );
  });

  test('a well-formed incoming X-Request-Id is kept; anything else is replaced', async () => {
    const { config, deps } = logged();
    const { app } = createApp(config, deps);
    const id = async (incoming: string) => (await req(app, 'GET', '/healthz', undefined, { 'x-request-id': incoming })).headers.get('x-request-id');
    expect(await id('0f8fad5b-d9cb-469f-a165-70867728950e')).toBe('0f8fad5b-d9cb-469f-a165-70867728950e');
    expect(await id('Root=1-67891233-abcdef012345678912345678')).toBe('Root=1-67891233-abcdef012345678912345678');
    expect(await id('has spaces in it')).toBe('req-1');
    expect(await id('x'.repeat(129))).toBe('req-2');
    expect(await id('<script>')).toBe('req-3');
  });

  test('an event stream carries it too', async () => {
    const { config, deps } = logged();
    const running = startServer(config, deps);
    try {
      await post(`${running.url}/register/s/a`);
      const stream = await openEvents(`${running.url}/events/s/a`, { headers: { 'x-request-id': 'stream-1' } });
      expect(stream.headers.get('x-request-id')).toBe('stream-1');
      stream.close();
    } finally {
      await running.stop();
    }
  });
});

describe('request log', () => {
  const { listen } = serversPerTest();

  test('one line per request, with its id, route template, status, error code and the ids in its path', async () => {
    const { config, deps, entries } = logged();
    const { app } = createApp(config, deps);
    await req(app, 'POST', '/register/s1/device');
    await req(app, 'POST', '/message/s1/device', { target: 'nobody', type: 'offer' });
    await req(app, 'POST', '/register/bad%20id/p');
    await settle();
    expect(entries()).toEqual([
      {
        time: expect.any(String),
        level: 'info',
        msg: 'request',
        requestId: 'req-1',
        method: 'POST',
        route: '/register/:sessionId/:peerId',
        status: 200,
        sessionId: 's1',
        peerId: 'device',
      },
      {
        time: expect.any(String),
        level: 'debug',
        msg: 'request',
        requestId: 'req-2',
        method: 'POST',
        route: '/message/:sessionId/:peerId',
        status: 404,
        error: 'target_not_found',
        sessionId: 's1',
        peerId: 'device',
      },
      // A malformed id is not repeated into the log.
      {
        time: expect.any(String),
        level: 'info',
        msg: 'request',
        requestId: 'req-3',
        method: 'POST',
        route: '/register/:sessionId/:peerId',
        status: 400,
        error: 'invalid_request',
        peerId: 'p',
      },
    ]);
  });

  test('at info level, relayed messages, probes and scrapes write nothing', async () => {
    const { config, deps, entries } = logged('info');
    const { app } = createApp(config, deps);
    await req(app, 'POST', '/register/s/a');
    await req(app, 'POST', '/register/s/b');
    for (let i = 0; i < 5; i++) await req(app, 'POST', '/message/s/a', { target: 'b', type: 'ice-candidate', payload: { candidate: 'c' } });
    await req(app, 'GET', '/healthz');
    await req(app, 'GET', '/readyz');
    await req(app, 'GET', '/metrics');
    await settle();
    expect(entries().map((e) => e.route)).toEqual(['/register/:sessionId/:peerId', '/register/:sessionId/:peerId']);
  });

  test('no token, credential, Authorization header, query or SDP reaches the log, even at debug level', async () => {
    const secrets = ['turn-secret-value', 'metrics-token-value', 'bearer-value', 'query-token-value', 'sdp-secret-value', 'candidate-secret-value'];
    const { config, deps, lines } = logged('debug', { turnSecret: secrets[0], iceUrls: ['turn:turn.example.com:3478'], metricsToken: secrets[1] });
    const { url } = listen(config, deps);
    const auth = { authorization: `Bearer ${secrets[2]}` };
    await fetch(`${url}/iceServers?peerId=a&token=${secrets[3]}`, { headers: auth });
    await fetch(`${url}/register/s/a?token=${secrets[3]}`, { method: 'POST', headers: auth });
    await fetch(`${url}/register/s/b`, { method: 'POST' });
    const stream = await openEvents(`${url}/events/s/b?token=${secrets[3]}`, { headers: auth });
    const offer = { target: 'b', type: 'offer', payload: { type: 'offer', sdp: `v=0 ${secrets[4]}` } };
    await fetch(`${url}/message/s/a`, { method: 'POST', body: JSON.stringify(offer), headers: auth });
    await stream.next(ofType('offer'));
    await fetch(`${url}/message/s/a`, { method: 'POST', body: JSON.stringify({ type: 'ice-candidate', payload: { candidate: secrets[5] } }) });
    await fetch(`${url}/message/s/a`, { method: 'POST', body: `{"type":"offer","payload":"${secrets[4]}"` });
    await fetch(`${url}/metrics`, { headers: auth });
    await fetch(`${url}/metrics?token=${secrets[1]}`);
    stream.close();
    await settle();
    expect(lines).toHaveLength(9); // one per request
    for (const secret of secrets) expect(lines.filter((line) => line.includes(secret))).toEqual([]);
  });

  test('a failure of the server itself is logged as an error with the request id, and answered 500 in the envelope', async () => {
    const { config, deps, entries } = logged('info');
    const app = createApp(config, deps).app.get('/broken', () => {
      throw new Error('a bug');
    });
    const res = await app.handle(new Request('http://localhost/broken'));
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ error: 'internal_error', message: 'the server failed; this is a bug' });
    await settle();
    const errors = entries().filter((e) => e.level === 'error');
    expect(errors.map((e) => e.msg)).toEqual(['internal error', 'request']);
    expect(errors.every((e) => e.requestId === 'req-1')).toBe(true);
    expect(errors[0]?.error).toMatchObject({ message: 'a bug' });
  });
});
