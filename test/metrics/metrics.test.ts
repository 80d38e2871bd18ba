import { describe, expect, test } from 'bun:test';
import pkg from '../../package.json';
import { createApp } from '../../src/app';
import { Exposition, Histogram } from '../../src/metrics/exposition';
import { defaultConfig, ManualClock, post, req, serversPerTest } from '../helpers';
import { ofType, openEvents } from '../sse-client';
import { parseExposition, scrape } from './scrape';

describe('the exposition format', () => {
  test('a histogram is written cumulative, with +Inf, sum and count, in the exposed unit', () => {
    const histogram = new Histogram([1, 2.5, 10], 1000);
    for (const ms of [0.5, 2, 2.5, 7, 50]) histogram.observe(ms);
    const out = new Exposition().family('h_seconds', 'histogram', 'help').histogram('h_seconds', histogram);
    const parsed = parseExposition(out.toString()).histogram('h_seconds');
    expect([...parsed.buckets]).toEqual([
      [0.001, 1],
      [0.0025, 3],
      [0.01, 4],
      [Infinity, 5],
    ]);
    expect(parsed.count).toBe(5);
    expect(parsed.sum).toBeCloseTo(0.062, 6);
  });

  test('label values and help text are escaped, and read back unchanged', () => {
    const value = 'a "quoted" back\\slash\nand a line break';
    const out = new Exposition().single('m', 'gauge', 'help with \\ and\nnewline', 1, { l: value });
    const parsed = parseExposition(out.toString());
    expect(parsed.family('m').metrics[0]?.labels?.l).toBe(value);
  });
});

describe('GET /metrics', () => {
  const { listen, streams } = serversPerTest();

  test('values move as traffic flows', async () => {
    const clock = new ManualClock();
    let now = 1000;
    const running = listen({ peerTimeoutMs: 15_000, maxQueue: 8 }, { clock, monotonic: () => now });
    const { url } = running;
    const open = async (path: string, lastEventId?: string) => {
      const stream = await openEvents(`${url}${path}`, { lastEventId });
      streams.push(stream);
      return stream;
    };

    let m = await scrape(url);
    expect(m.value('switchboard_sessions')).toBe(0);
    expect(m.value('switchboard_peers')).toBe(0);
    expect(m.value('switchboard_open_streams')).toBe(0);
    expect(m.histogram('switchboard_delivery_latency_seconds').count).toBe(0);

    for (const peer of ['a', 'b', 'c']) await post(`${url}/register/s/${peer}`);
    await post(`${url}/register/other/x`);
    const b = await open('/events/s/b');
    m = await scrape(url);
    expect(m.value('switchboard_sessions')).toBe(2);
    expect(m.value('switchboard_peers')).toBe(4);
    expect(m.value('switchboard_open_streams')).toBe(1);
    expect(m.value('switchboard_peers_joined_total')).toBe(4);

    // Relayed at once to b's open stream; held for c, which reads 2.5 s later.
    expect((await post(`${url}/message/s/a`, { target: 'b', type: 'offer', payload: { sdp: 'v=0' } })).status).toBe(200);
    await b.next(ofType('offer'));
    expect((await post(`${url}/message/s/a`, { target: 'c', type: 'answer' })).status).toBe(202);
    now += 2500;
    const c = await open('/events/s/c');
    await c.next(ofType('answer'));
    // Types a client makes up fold into "other"; refusals count too.
    for (let i = 0; i < 20; i++) await post(`${url}/message/s/a`, { target: 'b', type: `made-up-${i}` });
    expect((await post(`${url}/message/s/a`, { target: 'nobody', type: 'ice-candidate' })).status).toBe(404);
    expect((await post(`${url}/message/s/a`, { target: 'b', type: 'ping' })).status).toBe(400);

    m = await scrape(url);
    const messages = (type: string, outcome: string) => m.value('switchboard_messages_total', { type, outcome });
    expect(messages('offer', 'relayed')).toBe(1);
    expect(messages('answer', 'queued')).toBe(1);
    expect(messages('other', 'relayed')).toBe(20);
    expect(messages('ice-candidate', 'rejected')).toBe(1);
    expect(messages('other', 'rejected')).toBe(1);
    expect(new Set(m.family('switchboard_messages_total').metrics.map((s) => s.labels?.type))).toEqual(new Set(['offer', 'answer', 'ice-candidate', 'other']));
    const latency = m.histogram('switchboard_delivery_latency_seconds');
    expect(latency.count).toBe(22);
    expect(latency.buckets.get(1)).toBe(21); // the relayed ones took no time on this clock
    expect(latency.buckets.get(2.5)).toBe(22); // the held one took 2.5 s
    expect(latency.sum).toBeCloseTo(2.5, 6);
    expect(m.value('switchboard_open_streams')).toBe(2);

    // A resume, and one from an id that was never sent.
    b.close();
    await b.ended;
    const resumed = await open('/events/s/b', b.lastEventId);
    expect(resumed.status).toBe(200);
    expect((await openEvents(`${url}/events/s/b`, { lastEventId: '999' })).status).toBe(409);
    // One leaves, one times out without a stream.
    await fetch(`${url}/register/s/c`, { method: 'DELETE' });
    clock.advance(15_000);

    m = await scrape(url);
    expect(m.value('switchboard_resumes_total', { result: 'resumed' })).toBe(1);
    expect(m.value('switchboard_resumes_total', { result: 'resume_gap' })).toBe(1);
    expect(m.value('switchboard_peers_left_total', { reason: 'left' })).toBe(1);
    expect(m.value('switchboard_peers_left_total', { reason: 'timeout' })).toBe(2); // a and other/x had no stream
    expect(m.value('switchboard_peers')).toBe(1);
    expect(m.value('switchboard_sessions')).toBe(1);
  });

  test('HTTP responses are counted by method, route template and status, never by the path sent', async () => {
    const running = listen();
    const { url } = running;
    await post(`${url}/register/room-1/alice`);
    await post(`${url}/register/room-1/bob`);
    await post(`${url}/register/room%0A1/bob`);
    await fetch(`${url}/no/such/path?token=secret`);
    await fetch(`${url}/session/room-1`, { method: 'DELETE' });

    const m = await scrape(url);
    const http = (method: string, route: string, status: string) => m.value('switchboard_http_responses_total', { method, route, status });
    expect(http('POST', '/register/:sessionId/:peerId', '200')).toBe(2);
    expect(http('POST', '/register/:sessionId/:peerId', '400')).toBe(1);
    expect(http('GET', 'unmatched', '404')).toBe(1);
    expect(http('DELETE', '/session/:sessionId', '200')).toBe(1);
    const labels = m.family('switchboard_http_responses_total').metrics.flatMap((s) => Object.values(s.labels ?? {}));
    expect(labels.filter((l) => /room|alice|bob|no\/such|secret/.test(l))).toEqual([]);
  });

  test('process and build metrics', async () => {
    const running = listen();
    const m = await scrape(running.url);
    expect(m.value('process_resident_memory_bytes')).toBeGreaterThan(1e6);
    expect(m.value('process_heap_bytes')).toBeGreaterThan(0);
    expect(m.value('process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(m.value('process_cpu_seconds_total')).toBeCloseTo(m.value('process_cpu_user_seconds_total') + m.value('process_cpu_system_seconds_total'), 6);
    expect(m.value('process_start_time_seconds')).toBeLessThanOrEqual(Date.now() / 1000);
    expect(m.value('process_open_fds')).toBeGreaterThan(2);
    expect(m.value('switchboard_build_info', { version: pkg.version, bun: Bun.version })).toBe(1);
  });
});

describe('METRICS_TOKEN', () => {
  const { app } = createApp(defaultConfig({ metricsToken: 's3cret-token' }));

  test('without the token: 401 in the error envelope, with WWW-Authenticate', async () => {
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer wrong' }, { authorization: 's3cret-token' }, { authorization: 'Bearer s3cret-token-and-more' }]) {
      const res = await req(app, 'GET', '/metrics', undefined, headers);
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('unauthorized');
      expect(res.headers.get('www-authenticate')).toStartWith('Bearer');
    }
  });

  test('with it: the metrics', async () => {
    const res = await req(app, 'GET', '/metrics', undefined, { authorization: 'Bearer s3cret-token' });
    expect(res.status).toBe(200);
    expect(parseExposition(res.body).value('switchboard_sessions')).toBe(0);
  });

  test('without METRICS_TOKEN the metrics are open', async () => {
    expect((await req(createApp(defaultConfig()).app, 'GET', '/metrics')).status).toBe(200);
  });
});
