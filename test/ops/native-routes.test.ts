// On a listener, POST /register, POST /message and GET /events are answered by Bun's own router (registerRoutes, messageRoutes,
// eventStreamRoutes), outside Elysia's chain; `app.handle` answers them through Elysia's. Each must be one
// route to a client: the same statuses, bodies and headers (CORS, request id, Retry-After,
// WWW-Authenticate), the same counts and log lines.
import { afterEach, describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import type { Config } from '../../src/config';
import { createLogger } from '../../src/log/logger';
import { defaultConfig, listen, ManualClock, type Running } from '../helpers';
import { ofType, openEvents } from '../sse-client';

const ORIGIN = 'https://dash.example';

/** A server whose ids, tokens, clock and log are all deterministic: two of them given the same requests answer alike. */
function deterministic(config: Partial<Config>) {
  const lines: string[] = [];
  let ids = 0;
  let tokens = 0;
  const clock = new ManualClock();
  const server = createApp(defaultConfig(config), {
    clock,
    logger: createLogger({ level: 'debug', format: 'json', clock, write: (line) => lines.push(line) }),
    requestId: () => `req-${++ids}`,
    newToken: () => `token-${++tokens}`,
  });
  return { server, lines };
}

interface Step {
  path: string;
  body?: string;
  headers?: Record<string, string>;
  /** POST unless said. */
  method?: string;
}

/** What a client sees of an answer: its status, its body, and every header but the ones the socket adds. */
async function seen(response: Response) {
  const headers = [...response.headers.entries()].filter(([name]) => !['date', 'content-length', 'transfer-encoding'].includes(name)).sort();
  return { status: response.status, body: await response.text(), headers };
}

const candidate = JSON.stringify({ type: 'ice-candidate', target: 'b', payload: { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0' } });

/** Requests that cover every way POST /message answers: held, batched, refused by path, body, JSON, size, rate, token. */
function steps(token: string): Step[] {
  const auth = { authorization: `Bearer ${token}` };
  return [
    { path: '/message/s/a', body: candidate, headers: auth },
    { path: '/message/s/a', body: candidate, headers: { ...auth, origin: ORIGIN, 'x-request-id': 'client-chosen.1' } },
    { path: '/message/s/a', body: candidate, headers: { ...auth, origin: 'https://elsewhere.example' } },
    { path: '/message/s/a', body: candidate, headers: { ...auth, origin: 'dash.example', 'x-request-id': 'not a valid id' } },
    { path: '/message/s/a', body: `[${candidate},${candidate.replace('"b"', '"nobody"')}]`, headers: { ...auth, 'content-type': 'text/plain' } },
    { path: '/message/s/a', body: JSON.stringify({ type: 'offer', target: 'nobody', payload: {} }), headers: auth },
    { path: '/message/s/a%20', body: candidate, headers: auth },
    { path: '/message/s/a', body: JSON.stringify({ type: 7 }), headers: auth },
    { path: '/message/s/a', body: '{"type":', headers: auth },
    { path: '/message/s/a', body: '', headers: auth },
    { path: '/message/s/a', body: 'x'.repeat(64 * 1024 + 1), headers: auth },
    { path: '/message/nowhere/a', body: candidate, headers: auth },
    { path: '/message/s/a', body: candidate },
    { path: '/message/s/a', body: candidate, headers: { authorization: 'Bearer token-2' } },
    { path: '/message/s/a', body: JSON.stringify({ type: 'session-closed', target: 'b' }), headers: auth },
    { path: '/message/s/a', body: '[]', headers: auth },
    // The address's burst (20 here) runs out: 429 with Retry-After.
    ...Array.from({ length: 8 }, () => ({ path: '/message/s/a', body: candidate, headers: auth })),
  ];
}

const running: Running[] = [];
afterEach(async () => {
  for (const server of running.splice(0)) await server.stop();
});

/** Two deterministic servers of one configuration: one reached through `app.handle`, one on a listener. */
function twins(config: Partial<Config>) {
  const viaHandle = deterministic(config);
  const viaListener = deterministic(config);
  const served = listen(viaListener.server);
  running.push(served);
  return { viaHandle, viaListener, served, app: viaHandle.server.app };
}

/** Both servers counted and logged `route` alike: its /metrics lines, and one request line per step. */
async function expectSameRecords({ viaHandle, viaListener, served, app }: ReturnType<typeof twins>, route: string, steps: number): Promise<void> {
  const scrape = async (ask: (path: string) => Promise<Response>) => (await (await ask('/metrics')).text()).split('\n').filter((line) => line.includes(`route="${route}"`));
  expect(await scrape((path) => fetch(`${served.url}${path}`))).toEqual(await scrape((path) => app.handle(new Request(`http://localhost${path}`))));
  await new Promise((resolve) => setImmediate(resolve));
  const requestLines = (lines: string[]) => lines.filter((line) => line.includes(`"route":"${route}"`));
  expect(requestLines(viaListener.lines)).toEqual(requestLines(viaHandle.lines));
  expect(requestLines(viaHandle.lines)).toHaveLength(steps);
}

describe.each([
  ['any origin, open access', { corsOrigins: ['*'] }],
  ['a listed origin, tokens', { corsOrigins: [ORIGIN, 'dash.example'], authMode: 'token' }],
  ['a listed origin by its host', { corsOrigins: ['dash.example'] }],
] as [string, Partial<Config>][])('POST /message with %s', (_, config) => {
  // app.handle has no socket: both servers take the client's address from X-Forwarded-For, so that its rate is counted alike.
  const limited = { ...config, messageRatePerS: 1, messageBurst: 20, trustProxy: 1 };
  const client = { 'x-forwarded-for': '203.0.113.7' };

  test('answers on a listener exactly as through app.handle: statuses, bodies, headers, counts and log lines', async () => {
    const pair = twins(limited);
    const { served, app } = pair;

    const register = async (path: string) => {
      const a = await seen(await app.handle(new Request(`http://localhost${path}`, { method: 'POST', headers: client })));
      const b = await seen(await fetch(`${served.url}${path}`, { method: 'POST', headers: client }));
      expect(b).toEqual(a);
      return JSON.parse(a.body) as { token?: string };
    };
    const sender = await register('/register/s/a');
    await register('/register/s/b');

    const answers: number[] = [];
    for (const { path, body, headers } of steps(sender.token ?? 'none')) {
      const init = { method: 'POST', body, headers: { ...client, ...headers } };
      const a = await seen(await app.handle(new Request(`http://localhost${path}`, init)));
      const b = await seen(await fetch(`${served.url}${path}`, init));
      expect({ path, ...b }).toEqual({ path, ...a });
      answers.push(a.status);
    }
    // The steps reached what they were written for.
    expect(new Set(answers)).toEqual(new Set([202, 200, 404, 400, 413, 429, ...(config.authMode === 'token' ? [401, 403] : [])]));
    await expectSameRecords(pair, '/message/:sessionId/:peerId', answers.length);
  });
});

test('a message on a listener reaches the target’s open stream, answered 200 with its CORS headers', async () => {
  const served = listen(createApp(defaultConfig({ corsOrigins: [ORIGIN] })));
  running.push(served);
  await fetch(`${served.url}/register/s/a`, { method: 'POST' });
  await fetch(`${served.url}/register/s/b`, { method: 'POST' });
  const events = await openEvents(`${served.url}/events/s/b`);
  try {
    const res = await fetch(`${served.url}/message/s/a`, { method: 'POST', body: candidate, headers: { origin: ORIGIN } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ message: 'Message sent' });
    expect(res.headers.get('access-control-allow-origin')).toBe(ORIGIN);
    expect(res.headers.get('vary')).toBe('Origin');
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]+$/);
    const { type, payload } = JSON.parse(candidate);
    expect((await events.next(ofType('ice-candidate', 'a'))).json).toEqual({ type, payload, senderId: 'a' });
  } finally {
    events.close();
  }
});

describe.each([
  ['any origin, open access', { corsOrigins: ['*'] }],
  ['a listed origin, tokens', { corsOrigins: [ORIGIN], authMode: 'token' }],
] as [string, Partial<Config>][])('GET /events with %s', (_, config) => {
  // app.handle has no socket: both servers take the client's address from X-Forwarded-For, so that its stream cap counts alike.
  const capped = { ...config, maxStreamsPerIp: 3, trustProxy: 1 };
  const client = { 'x-forwarded-for': '203.0.113.7' };

  test('opens, resumes and refuses on a listener exactly as through app.handle: statuses, heads, first bytes, counts and log lines', async () => {
    const pair = twins(capped);
    const { served, app } = pair;
    const tokens: Record<string, string> = {};
    for (const peer of ['a', 'b', 'c', 'd']) {
      const init = { method: 'POST', headers: client };
      const a = await seen(await app.handle(new Request(`http://localhost/register/s/${peer}`, init)));
      expect(await seen(await fetch(`${served.url}/register/s/${peer}`, init))).toEqual(a);
      tokens[peer] = (JSON.parse(a.body) as { token?: string }).token ?? 'none';
    }
    const auth = (peer: string) => ({ authorization: `Bearer ${tokens[peer]}` });
    const steps: Step[] = [
      { path: '/events/s/a', headers: { ...auth('a'), origin: ORIGIN, 'x-request-id': 'client-chosen.2' } },
      { path: `/events/s/b?token=${tokens.b}&lastEventId=1` },
      { path: '/events/s/c?lastEventId=x', headers: auth('c') },
      { path: '/events/s/c', headers: { ...auth('c'), 'last-event-id': '99' } },
      { path: '/events/s/c?token=1&token=2' },
      { path: '/events/s/c%20', headers: auth('c') },
      { path: '/events/nowhere/c', headers: auth('c') },
      { path: '/events/s/c', headers: auth('d') },
      { path: '/events/s/c' },
      { path: '/events/s/c', headers: { ...auth('c'), origin: 'https://elsewhere.example' } },
      // The address holds 3 streams now (a, b, c): the cap (3) refuses the next one, 429.
      { path: '/events/s/d', headers: auth('d') },
    ];
    const opened: ReadableStreamDefaultReader<Uint8Array>[] = [];
    /** A stream's answer as a client sees it: its head, and its first two frames (the retry, and the id it resumes after). */
    const head = async (response: Response) => {
      if (response.status !== 200 || !response.body) return seen(response);
      const reader = response.body.getReader();
      opened.push(reader);
      let text = '';
      while (text.split('\n\n').length < 3) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      const { body: _, ...rest } = await seen(new Response(null, response));
      return { ...rest, body: text.split('\n\n').slice(0, 2).join('\n\n') };
    };
    const statuses: number[] = [];
    try {
      for (const { path, headers } of steps) {
        const init = { headers: { ...client, ...headers } };
        const a = await head(await app.handle(new Request(`http://localhost${path}`, init)));
        const b = await head(await fetch(`${served.url}${path}`, init));
        expect({ path, ...b }).toEqual({ path, ...a });
        statuses.push(a.status);
      }
    } finally {
      for (const reader of opened) await reader.cancel();
    }
    expect(new Set(statuses)).toEqual(new Set([200, 400, 404, 409, 429, ...(config.authMode === 'token' ? [401, 403] : [])]));
    await expectSameRecords(pair, '/events/:sessionId/:peerId', steps.length);
  });
});

describe.each([
  ['any origin, open access', { corsOrigins: ['*'] }],
  ['a listed origin, tokens', { corsOrigins: [ORIGIN], authMode: 'token' }],
] as [string, Partial<Config>][])('POST and DELETE /register with %s', (_, config) => {
  // app.handle has no socket: both servers take the client's address from X-Forwarded-For, so that its rate is counted alike.
  const limited = { ...config, registerRatePerMin: 1, registerBurst: 9, trustProxy: 1, turnSecret: 'a-secret', iceUrls: ['turn:turn.example:3478'] };
  const client = { 'x-forwarded-for': '203.0.113.7' };

  test('registers and leaves on a listener exactly as through app.handle: statuses, bodies (ICE servers included), headers, counts and log lines', async () => {
    const pair = twins(limited);
    const { served, app } = pair;
    const steps: Step[] = [
      { path: '/register/s/a', headers: { origin: ORIGIN, 'x-request-id': 'client-chosen.3' } },
      { path: '/register/s/b?role=view&mode=mesh' },
      // A name given twice: its last value.
      { path: '/register/s/c?role=publish&role=view' },
      { path: '/register/s/d?mode=sfu' },
      { path: '/register/s/d?role=admin' },
      { path: '/register/s/d?mode=relay' },
      { path: '/register/s%20/d' },
      { path: `/register/s/${'x'.repeat(129)}` },
      // Taking an id over: with its token in token mode (200), with another's (403).
      { path: '/register/s/a', headers: { authorization: 'Bearer token-1' } },
      { path: '/register/s/a', headers: { authorization: 'Bearer token-2', origin: 'https://elsewhere.example' } },
      // Taking an id over without a token: 401 in token mode.
      { path: '/register/s/b' },
      // The address's burst (9 here; refusals of the path or the query count none) runs out: 429 with Retry-After.
      ...Array.from({ length: 3 }, (_, i) => ({ path: `/register/u/p${i}` })),
      // Leaving: c with its token, with a stale one, without one (open mode lets anyone), an id refused, a peer or session unknown.
      { path: '/register/s/c', method: 'DELETE', headers: { authorization: 'Bearer token-2', origin: ORIGIN } },
      { path: '/register/s/c', method: 'DELETE', headers: { authorization: 'Bearer token-3' } },
      { path: '/register/s/b', method: 'DELETE' },
      { path: '/register/s/b%20', method: 'DELETE' },
      { path: '/register/s/nobody', method: 'DELETE' },
      { path: '/register/nowhere/b', method: 'DELETE' },
    ];
    const statuses: number[] = [];
    for (const { path, headers, method = 'POST' } of steps) {
      const init = { method, headers: { ...client, ...headers } };
      const a = await seen(await app.handle(new Request(`http://localhost${path}`, init)));
      const b = await seen(await fetch(`${served.url}${path}`, init));
      expect({ path, ...b }).toEqual({ path, ...a });
      statuses.push(a.status);
    }
    // The steps reached what they were written for.
    expect(new Set(statuses)).toEqual(new Set([200, 400, 404, 409, 429, ...(config.authMode === 'token' ? [401, 403] : [])]));
    await expectSameRecords(pair, '/register/:sessionId/:peerId', steps.length);
  });
});
