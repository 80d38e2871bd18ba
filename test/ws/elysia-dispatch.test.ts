// GET /ws hands Bun's upgrade a `WsConnection` as the socket's data, and Elysia's Bun adapter calls that
// data's `open`, `message`, `drain`, `close` and `pong`: its WebSocket dispatcher (`websocket` in
// elysia/ws), an internal of Elysia's, not its documented ws() API, which parses and wraps every frame.
// Elysia is pinned to one exact version in package.json for that reason; this file fails the day an
// upgrade changes that dispatch. Run it before changing Elysia's version.
import { afterEach, describe, expect, test } from 'bun:test';
import { Elysia } from 'elysia';
import pkg from '../../package.json';
import { WsConnection } from '../../src/ws/connection';
import { WS_SERVER_OPTIONS } from '../../src/ws/routes';
import { until } from '../helpers';

/** What Elysia's dispatcher called on the socket's data. */
class Recorder {
  readonly calls: string[] = [];
  open(ws: { ping(): number }): void {
    this.calls.push('open');
    ws.ping();
  }
  message(_ws: unknown, data: string | Uint8Array): void {
    this.calls.push(`message ${String(data)}`);
  }
  pong(): void {
    this.calls.push('pong');
  }
  close(): void {
    this.calls.push('close');
  }
}

let stop: (() => Promise<unknown>) | undefined;
afterEach(async () => {
  await stop?.();
  stop = undefined;
});

describe("Elysia's WebSocket dispatch, which WsConnection relies on", () => {
  test('Elysia is pinned to the exact version installed', async () => {
    const installed = (await Bun.file(Bun.resolveSync('elysia/package.json', import.meta.dir)).json()) as { version: string };
    expect(pkg.dependencies.elysia).toBe(installed.version);
  });

  test("an upgrade with an object as data: Elysia calls the object's open, message, pong and close", async () => {
    const recorder = new Recorder();
    const app = new Elysia({ websocket: WS_SERVER_OPTIONS }).get('/ws', ({ request, server }) => {
      if (server?.upgrade(request, { data: recorder })) return;
      return new Response('no upgrade', { status: 400 });
    });
    app.listen({ port: 0, hostname: '127.0.0.1', reusePort: false, development: false });
    stop = () => app.stop(true);
    const socket = new WebSocket(`ws://127.0.0.1:${app.server?.port}/ws`);
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = reject;
    });
    socket.send('hello');
    await until(() => recorder.calls.includes('message hello') && recorder.calls.includes('pong'), 'the message and the pong');
    socket.close();
    await until(() => recorder.calls.includes('close'), 'the close');
    expect(recorder.calls.filter((c) => c !== 'pong')).toEqual(['open', 'message hello', 'close']);
  });

  test('WsConnection has every handler that the dispatcher calls', () => {
    for (const handler of ['open', 'message', 'drain', 'close', 'pong'] as const) expect(typeof WsConnection.prototype[handler]).toBe('function');
  });
});
