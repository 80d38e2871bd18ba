// On a listener, POST /message is answered by Bun's own router (messageRoutes), outside Elysia's chain;
// `app.handle` answers it through Elysia's. The two must be one route to a client: the same statuses,
// bodies and headers (CORS, request id, Retry-After, WWW-Authenticate), the same counts and log lines.
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
}

/** What a client sees of an answer: its status, its body, and every header but the ones the socket adds. */
async function seen(response: Response) {
  const headers = [...response.headers.entries()].filter(([name]) => name !== 'date' && name !== 'content-length').sort();
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

describe.each([
  ['any origin, open access', { corsOrigins: ['*'] }],
  ['a listed origin, tokens', { corsOrigins: [ORIGIN, 'dash.example'], authMode: 'token' }],
  ['a listed origin by its host', { corsOrigins: ['dash.example'] }],
] as [string, Partial<Config>][])('POST /message with %s', (_, config) => {
  // app.handle has no socket: both servers take the client's address from X-Forwarded-For, so that its rate is counted alike.
  const limited = { ...config, messageRatePerS: 1, messageBurst: 20, trustProxy: 1 };
  const client = { 'x-forwarded-for': '203.0.113.7' };

  test('answers on a listener exactly as through app.handle: statuses, bodies, headers, counts and log lines', async () => {
    const viaHandle = deterministic(limited);
    const viaListener = deterministic(limited);
    const served = listen(viaListener.server);
    running.push(served);
    const { app } = viaHandle.server;

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

    const scrape = async (ask: (path: string) => Promise<Response>) =>
      (await (await ask('/metrics')).text()).split('\n').filter((line) => line.includes('route="/message/:sessionId/:peerId"'));
    expect(await scrape((path) => fetch(`${served.url}${path}`))).toEqual(await scrape((path) => app.handle(new Request(`http://localhost${path}`))));
    await new Promise((resolve) => setImmediate(resolve));
    const requestLines = (lines: string[]) => lines.filter((line) => line.includes('"route":"/message/:sessionId/:peerId"'));
    expect(requestLines(viaListener.lines)).toEqual(requestLines(viaHandle.lines));
    expect(requestLines(viaHandle.lines)).toHaveLength(answers.length);
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
