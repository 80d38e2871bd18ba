import { afterEach } from 'bun:test';
import { type App, type AppDeps, createApp, type Switchboard } from '../src/app';
import type { Cancel, Clock } from '../src/clock';
import { type Config, defaultConfig } from '../src/config';
import type { SseConnection } from './sse-client';

export type { App, Switchboard };
export { defaultConfig };

/** A clock that moves only when told to: timeouts are tested without waiting for them. */
export class ManualClock implements Clock {
  private time: number;
  private tasks: { at: number; seq: number; fn: () => void }[] = [];
  private seq = 0;

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  schedule(ms: number, fn: () => void): Cancel {
    const task = { at: this.time + ms, seq: this.seq++, fn };
    this.tasks.push(task);
    return () => {
      this.tasks = this.tasks.filter((t) => t !== task);
    };
  }

  /** Moves time forward, running what falls due in order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const due = this.tasks.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.tasks = this.tasks.filter((t) => t !== due);
      this.time = Math.max(this.time, due.at);
      due.fn();
    }
    this.time = end;
  }

  /**
   * Moves time forward without running anything, as for a process that stood still (a pause, a starved
   * machine): what fell due meanwhile runs at the next `advance`, late and once.
   */
  jump(ms: number): void {
    this.time += ms;
  }
}

export interface Reply {
  status: number;
  headers: Headers;
  body: any;
}

/** One request through `app.handle`, no socket. `body` is sent as JSON unless it is a string. */
export async function req(app: App, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = typeof body === 'string' ? body : JSON.stringify(body);
  const response = await app.handle(new Request(`http://localhost${path}`, init));
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: keep the text.
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

/** A server listening (`startServer`, `listen`): `createApp`'s parts and the listener's URL; `stop()` ends it all. */
export interface Running extends Switchboard {
  url: string;
}

export interface ServeOptions {
  idleTimeout?: number;
  tls?: { cert: string; key: string };
  http2?: boolean;
}

/** A real listener on 127.0.0.1 and a free port. */
export function startServer(config: Partial<Config> = {}, deps: Partial<AppDeps> = {}, serve: ServeOptions = {}): Running {
  return listen(createApp(defaultConfig(config), deps), serve);
}

/** Starts the listener of a server already built (one whose backend had to be `ready` first, say), on 127.0.0.1 and a free port. */
export function listen(server: Switchboard, serve: ServeOptions = {}): Running {
  server.app.listen({ port: 0, hostname: '127.0.0.1', reusePort: false, development: false, ...serve });
  const port = server.app.server?.port;
  if (!port) throw new Error('server did not start');
  return { ...server, url: `${serve.tls ? 'https' : 'http'}://127.0.0.1:${port}` };
}

/**
 * For the tests of a describe block that use real listeners: `listen` starts one (as `startServer`), and
 * the event streams pushed onto `streams` are closed and the servers stopped after each test.
 */
export function serversPerTest(): { listen: typeof startServer; streams: SseConnection[] } {
  const servers: Running[] = [];
  const streams: SseConnection[] = [];
  afterEach(async () => {
    for (const s of streams.splice(0)) s.close();
    for (const running of servers.splice(0)) await running.stop();
  });
  return {
    listen(...args) {
      const running = startServer(...args);
      servers.push(running);
      return running;
    },
    streams,
  };
}

/**
 * For the tests of a file that answer requests without a listener (`app.handle`) but open what must be
 * closed (relay connections, say): `build` makes a server as `createApp` does, on `defaultConfig` and
 * `config`, and every server it made is stopped after each test.
 */
export function appsPerTest(): (config?: Partial<Config>, deps?: Partial<AppDeps>) => Switchboard {
  const built: Switchboard[] = [];
  afterEach(async () => {
    for (const server of built.splice(0)) await server.stop();
  });
  return (config = {}, deps = {}) => {
    const server = createApp(defaultConfig(config), deps);
    built.push(server);
    return server;
  };
}

/**
 * Waits until `check` holds, polling every few milliseconds; fails naming `what` after `timeoutMs`. For
 * state that changes by itself, with no event to wait on (a reconnection, a webhook received, a socket
 * closed); never for a timeout, which the injected clock drives.
 */
export async function until(check: () => boolean | Promise<boolean>, what = check.toString(), timeoutMs = 10_000, explain: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      const detail = explain();
      throw new Error(`not reached within ${timeoutMs} ms: ${what}${detail ? `\n${detail}` : ''}`);
    }
    await Bun.sleep(10);
  }
}

/** POSTs JSON to a running server and returns status and parsed body. */
export async function post(url: string, body?: unknown): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, { method: 'POST', body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: await res.json(), headers: res.headers };
}
