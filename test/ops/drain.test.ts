import { afterEach, describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import type { Config } from '../../src/config';
import { createLogger } from '../../src/log/logger';
import { defaultConfig, ManualClock, post } from '../helpers';
import { finalStatus, startInFlight } from '../in-flight';
import { openEvents } from '../sse-client';

/** A real listener, with a clock that moves only when told, and its log lines. */
function listening(config: Partial<Config> = {}) {
  const clock = new ManualClock();
  const lines: { level: string; msg: string }[] = [];
  // The drain's own lines, not those of each request.
  const write = (line: string) => (JSON.parse(line).msg === 'request' ? undefined : lines.push(JSON.parse(line)));
  const logger = createLogger({ level: 'info', format: 'json', clock, write });
  const app = createApp(defaultConfig({ shutdownTimeoutMs: 5000, ...config }), { clock, logger });
  app.listen({ port: 0, hostname: '127.0.0.1', reusePort: false, development: false });
  const server = app.server;
  if (!server) throw new Error('server did not start');
  return { app, server, clock, lines, url: `http://127.0.0.1:${server.port}` };
}

let cleanup: (() => Promise<unknown>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

describe('Drain', () => {
  test('reports draining, stops accepting, ends every stream, and lets the request in flight finish', async () => {
    const { app, server, url, lines } = listening();
    cleanup = () => server.stop(true);
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    const stream = await openEvents(`${url}/events/s/b`);
    const inFlight = await startInFlight(url, '/message/s/a', JSON.stringify({ target: 'b', type: 'offer' }));

    const drained = app.decorator.drain.run(server);
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
    const { app, server, url } = listening();
    cleanup = () => server.stop(true);
    await post(`${url}/register/s/a`);
    await app.decorator.drain.run(server);
    const res = await app.handle(new Request('http://localhost/events/s/a'));
    expect(res.status).toBe(200);
    expect(await res.text()).toStartWith('retry: ');
  });

  test('what is still open at SHUTDOWN_TIMEOUT_MS is closed', async () => {
    const { app, server, url, clock, lines } = listening({ shutdownTimeoutMs: 2000 });
    await post(`${url}/register/s/a`);
    const inFlight = await startInFlight(url, '/message/s/a', '{"type":"never-finished"}');
    const drained = app.decorator.drain.run(server);
    clock.advance(1999);
    clock.advance(1);
    expect(await drained).toBe('forced');
    expect(finalStatus(await inFlight.closed)).toBeUndefined();
    expect(lines.map((l) => `${l.level} ${l.msg}`)).toEqual(['info draining', 'warn requests still open at the shutdown deadline: closing them', 'info stopped']);
  });

  test('running it twice drains once', async () => {
    const { app, server } = listening();
    const first = app.decorator.drain.run(server);
    expect(app.decorator.drain.run(server)).toBe(first);
    expect(await first).toBe('drained');
  });
});
