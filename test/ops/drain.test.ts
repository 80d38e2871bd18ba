import { afterEach, describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import type { Config } from '../../src/config';
import { createLogger } from '../../src/log/logger';
import { defaultConfig, ManualClock, post, req, startServer } from '../helpers';
import { finalStatus, startInFlight } from '../in-flight';
import { openEvents } from '../sse-client';

/** A real listener, with a clock that moves only when told, and its log lines. */
function listening(config: Partial<Config> = {}) {
  const clock = new ManualClock();
  const lines: { level: string; msg: string }[] = [];
  // The drain's own lines, not those of each request.
  const write = (line: string) => (JSON.parse(line).msg === 'request' ? undefined : lines.push(JSON.parse(line)));
  const logger = createLogger({ level: 'info', format: 'json', clock, write });
  const running = startServer({ shutdownTimeoutMs: 5000, ...config }, { clock, logger });
  const server = running.app.server;
  if (!server) throw new Error('server did not start');
  return { ...running, server, clock, lines };
}

let cleanup: (() => Promise<unknown>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

describe('Drain', () => {
  test('reports draining, stops accepting, ends every stream, and lets the request in flight finish', async () => {
    const { app, drain, server, url, lines, stop } = listening();
    cleanup = stop;
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    const stream = await openEvents(`${url}/events/s/b`);
    const inFlight = await startInFlight(url, '/message/s/a', JSON.stringify({ target: 'b', type: 'offer' }));

    const drained = drain.run(server);
    expect((await app.handle(new Request('http://localhost/readyz'))).status).toBe(503);
    await stream.ended;
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();

    inFlight.finish();
    // b's stream has ended: the message is held for it.
    expect(finalStatus(await inFlight.closed)).toBe(202);
    expect(await drained).toBe('drained');
    expect(lines.map((l) => l.msg)).toEqual(['draining', 'stopped']);
  });

  test('a stream asked for while draining ends at once, so that its client goes elsewhere', async () => {
    const { app, drain, server, url, stop } = listening();
    cleanup = stop;
    await post(`${url}/register/s/a`);
    await drain.run(server);
    const res = await app.handle(new Request('http://localhost/events/s/a'));
    expect(res.status).toBe(200);
    expect(await res.text()).toStartWith('retry: ');
  });

  test('what is still open at SHUTDOWN_TIMEOUT_MS is closed', async () => {
    const { drain, server, url, clock, lines, stop } = listening({ shutdownTimeoutMs: 2000 });
    cleanup = stop;
    await post(`${url}/register/s/a`);
    const inFlight = await startInFlight(url, '/message/s/a', '{"type":"never-finished"}');
    const drained = drain.run(server);
    clock.advance(1999);
    clock.advance(1);
    expect(await drained).toBe('forced');
    expect(finalStatus(await inFlight.closed)).toBeUndefined();
    expect(lines.map((l) => `${l.level} ${l.msg}`)).toEqual(['info draining', 'warn requests still open at the shutdown deadline: closing them', 'info stopped']);
  });

  test('running it twice drains once', async () => {
    const { drain, server, stop } = listening();
    cleanup = stop;
    const first = drain.run(server);
    expect(drain.run(server)).toBe(first);
    expect(await first).toBe('drained');
  });
});

describe('stop()', () => {
  test('graceful: the drain first, then the rest; calling it again is the same stop', async () => {
    const { url, lines, stop } = listening();
    cleanup = stop;
    await post(`${url}/register/s/a`);
    const stream = await openEvents(`${url}/events/s/a`);
    const stopped = stop({ graceful: true });
    expect(stop()).toBe(stopped);
    await stream.ended;
    await stopped;
    expect(lines.map((l) => l.msg)).toEqual(['draining', 'stopped']);
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });

  test('at once: /readyz says draining, the listener and every stream close without waiting for the requests in flight', async () => {
    const { app, url, lines, stop } = listening();
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    const stream = await openEvents(`${url}/events/s/b`);
    const inFlight = await startInFlight(url, '/message/s/a', '{"type":"never-finished"}');
    await stop();
    await stream.ended;
    expect(finalStatus(await inFlight.closed)).toBeUndefined();
    expect((await app.handle(new Request('http://localhost/readyz'))).status).toBe(503);
    // No drain ran: nothing waited.
    expect(lines).toEqual([]);
  });

  test('an app that never listened: /readyz says draining, and its streams end', async () => {
    const server = createApp(defaultConfig());
    await req(server.app, 'POST', '/register/s/a');
    const res = await server.app.handle(new Request('http://localhost/events/s/a'));
    const reading = res.text();
    await server.stop();
    expect(await reading).toStartWith('retry: ');
    expect((await req(server.app, 'GET', '/readyz')).status).toBe(503);
  });
});
