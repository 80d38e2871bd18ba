// Routes for probes, scrapers and backends answer without CORS headers: no web page on another origin
// can read them, whatever CORS_ORIGINS allows for the API.
import { describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import type { Config } from '../../src/config';
import { defaultConfig, req } from '../helpers';

const ADMIN_TOKEN = 'admin-token-of-16-chars';
const ORIGIN = 'https://dash.example';

function cors(res: { headers: Headers }): string[] {
  return [...res.headers.keys()].filter((name) => name.startsWith('access-control-'));
}

describe.each([
  ['any origin', {}],
  ['a listed origin', { corsOrigins: [ORIGIN] }],
] as [string, Partial<Config>][])('with CORS_ORIGINS allowing %s', (_, config) => {
  const app = () => createApp(defaultConfig({ adminToken: ADMIN_TOKEN, metricsToken: 'scrape-me', ...config })).app;
  const from = (headers: Record<string, string> = {}) => ({ origin: ORIGIN, ...headers });

  test('/metrics, /healthz and /readyz carry none, answered or refused', async () => {
    const server = app();
    const answers = [
      await req(server, 'GET', '/metrics', undefined, from({ authorization: 'Bearer scrape-me' })),
      await req(server, 'GET', '/metrics', undefined, from()),
      await req(server, 'GET', '/healthz', undefined, from()),
      await req(server, 'GET', '/readyz', undefined, from()),
    ];
    expect(answers.map((r) => r.status)).toEqual([200, 401, 200, 200]);
    for (const res of answers) expect(cors(res)).toEqual([]);
  });

  test('the admin API carries none, answered, refused or invalid', async () => {
    const server = app();
    const admin = from({ authorization: `Bearer ${ADMIN_TOKEN}` });
    const answers = [
      await req(server, 'GET', '/sessions', undefined, admin),
      await req(server, 'GET', '/sessions', undefined, from()),
      await req(server, 'POST', '/sessions', { sessionId: 'fleet', peers: [{ peerId: 'cam', role: 'publisher' }] }, admin),
      await req(server, 'POST', '/sessions', { sessionId: 'fleet' }, from()),
      await req(server, 'POST', '/sessions', { sessionId: 42 }, admin),
      await req(server, 'GET', '/sessions/nothing-here', undefined, admin),
    ];
    expect(answers.map((r) => r.status)).toEqual([200, 401, 201, 401, 400, 404]);
    for (const res of answers) expect(cors(res)).toEqual([]);
  });

  test('the signalling API and its description keep theirs', async () => {
    const server = app();
    for (const path of ['/iceServers', '/openapi.json']) {
      const res = await req(server, 'GET', path, undefined, from());
      expect(res.headers.get('access-control-allow-origin')).toBeOneOf(['*', ORIGIN]);
    }
    const registered = await req(server, 'POST', '/register/s/a', undefined, from());
    expect(registered.headers.get('access-control-allow-origin')).toBeOneOf(['*', ORIGIN]);
  });
});

describe('METRICS_TOKEN', () => {
  test('only the exact header is let in: a prefix, an extension, another scheme or case are not', async () => {
    const { app } = createApp(defaultConfig({ metricsToken: 'scrape-me' }));
    const status = async (authorization?: string) => (await req(app, 'GET', '/metrics', undefined, authorization === undefined ? {} : { authorization })).status;
    expect(await status('Bearer scrape-me')).toBe(200);
    for (const wrong of [undefined, '', 'Bearer scrape-m', 'Bearer scrape-me2', 'Bearer scrape-mE', 'Basic scrape-me', 'scrape-me', 'Bearer '.repeat(500)]) {
      expect(await status(wrong)).toBe(401);
    }
  });
});
