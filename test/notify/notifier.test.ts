import { afterEach, describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import { createLogger } from '../../src/log/logger';
import { Notifier, type NotifierTiming, notificationSignature } from '../../src/notify/notifier';
import { notificationReceiver, type ReceivedNotification } from '../fixtures/notification-receiver';
import { defaultConfig, ManualClock, req, until } from '../helpers';

const SECRET = 'notify-secret-for-tests';

const servers: { stop(force?: boolean): unknown }[] = [];
const notifiers: Notifier[] = [];
afterEach(() => {
  for (const n of notifiers.splice(0)) n.stop();
  for (const s of servers.splice(0)) s.stop(true);
});

function verified(r: ReceivedNotification): boolean {
  const timestamp = r.headers.get('x-switchboard-timestamp') ?? '';
  return r.headers.get('x-switchboard-signature') === notificationSignature(SECRET, timestamp, r.body);
}

const timing: NotifierTiming = { timeoutMs: 10_000, backoffMs: 1000, maxBackoffMs: 8000, maxAttempts: 4 };

/** A log line as `message {fields}`, without the time and level. */
function messageOf(line: string): string {
  const { msg, time: _time, level: _level, ...fields } = JSON.parse(line) as Record<string, unknown>;
  return `${msg} ${JSON.stringify(fields)}`;
}

function notifier(url: string, clock: ManualClock, capacity = 100, log: string[] = []) {
  let n = 0;
  const logger = createLogger({ level: 'info', format: 'json', clock, write: (line) => void log.push(messageOf(line)) });
  const made = new Notifier(url, SECRET, capacity, { clock, newId: () => `n${++n}`, logger }, timing);
  notifiers.push(made);
  return made;
}

const joined = (peerId: string) => ({ type: 'peer-joined' as const, sessionId: 's', peerId, takeover: false });

describe('notifications from a running app', () => {
  test('session created, peer joined, peer left, session closed: POSTed in order, signed, timestamped', async () => {
    const hook = notificationReceiver();
    servers.push(hook);
    const clock = new ManualClock();
    const { app } = createApp(defaultConfig({ notifyUrl: hook.url, notifySecret: SECRET }), { clock });
    await req(app, 'POST', '/register/s/a');
    await req(app, 'POST', '/register/s/b');
    await req(app, 'DELETE', '/register/s/b');
    await req(app, 'DELETE', '/session/s');
    await until(() => hook.received.length === 5, 'five notifications');
    expect(hook.received.map((r) => r.json)).toEqual([
      { type: 'session-created', sessionId: 's', by: 'register', id: expect.any(String), time: '2026-01-01T00:00:00.000Z' },
      { type: 'peer-joined', sessionId: 's', peerId: 'a', role: 'publisher', takeover: false, id: expect.any(String), time: expect.any(String) },
      { type: 'peer-joined', sessionId: 's', peerId: 'b', role: 'viewer', takeover: false, id: expect.any(String), time: expect.any(String) },
      { type: 'peer-left', sessionId: 's', peerId: 'b', reason: 'left', id: expect.any(String), time: expect.any(String) },
      { type: 'session-closed', sessionId: 's', reason: 'closed', id: expect.any(String), time: expect.any(String) },
    ]);
    for (const r of hook.received) {
      expect(verified(r)).toBe(true);
      expect(r.headers.get('x-switchboard-timestamp')).toBe(String(Math.floor(clock.now() / 1000)));
      expect(r.headers.get('x-switchboard-event')).toBe(r.json.type);
      expect(r.headers.get('x-switchboard-id')).toBe(r.json.id);
      expect(r.headers.get('content-type')).toBe('application/json');
    }
    // The signature covers the body: any change breaks it.
    const first = hook.received[0] as ReceivedNotification;
    expect(notificationSignature(SECRET, first.headers.get('x-switchboard-timestamp') ?? '', first.body.replace('"s"', '"t"'))).not.toBe(
      first.headers.get('x-switchboard-signature'),
    );
  });

  test('a peer that times out is reported as such, and the last one out closes the session', async () => {
    const hook = notificationReceiver();
    servers.push(hook);
    const clock = new ManualClock();
    const { app } = createApp(defaultConfig({ notifyUrl: hook.url, notifySecret: SECRET, peerTimeoutMs: 1000 }), { clock });
    await req(app, 'POST', '/register/s/a');
    clock.advance(1000);
    await until(() => hook.received.length === 4, 'four notifications');
    expect(hook.received.slice(2).map((r) => r.json)).toMatchObject([
      { type: 'peer-left', peerId: 'a', reason: 'timeout' },
      { type: 'session-closed', reason: 'empty' },
    ]);
  });

  test('a backend that never answers does not hold up signalling', async () => {
    let release: () => void = () => {};
    const hanging = new Promise<Response>((resolve) => (release = () => resolve(new Response(null, { status: 204 }))));
    const hook = notificationReceiver(() => hanging);
    servers.push(hook);
    const { app } = createApp(defaultConfig({ notifyUrl: hook.url, notifySecret: SECRET, notifyQueue: 10 }), { clock: new ManualClock() });
    await req(app, 'POST', '/register/s/p0');
    await until(() => hook.received.length === 1, 'the first notification');
    // Hundreds of events while the first POST hangs: every request is answered.
    for (let i = 1; i < 200; i++) expect((await req(app, 'POST', `/register/s/p${i % 60}`)).status).toBe(200);
    expect(hook.received).toHaveLength(1);
    release();
  });
});

describe('retries', () => {
  test('after 5xx and network errors, with exponential backoff on the injected clock', async () => {
    const hook = notificationReceiver((n) => new Response(null, { status: n <= 2 ? 500 : 204 }));
    servers.push(hook);
    const clock = new ManualClock();
    const n = notifier(hook.url, clock);
    n.notify(joined('a'));
    n.notify(joined('b'));
    await until(() => n.stats().state === 'waiting', 'the first retry to be scheduled');
    expect(hook.received).toHaveLength(1);
    // A retry that fell due would be sending now: the attempt starts in the clock's callback.
    clock.advance(999);
    expect(n.stats()).toMatchObject({ state: 'waiting', delivered: 0 });
    expect(hook.received).toHaveLength(1);
    clock.advance(1);
    await until(() => hook.received.length === 2 && n.stats().state === 'waiting', 'the second attempt');
    // The second retry waits twice as long.
    clock.advance(1999);
    expect(n.stats()).toMatchObject({ state: 'waiting', delivered: 0 });
    expect(hook.received).toHaveLength(2);
    clock.advance(1);
    await until(() => n.stats().delivered === 2, 'both delivered');
    expect(hook.received.map((r) => r.json.peerId)).toEqual(['a', 'a', 'a', 'b']);
    expect(new Set(hook.received.slice(0, 3).map((r) => r.json.id)).size).toBe(1);
    // Each attempt is signed afresh with its own timestamp.
    expect(hook.received.map((r) => r.headers.get('x-switchboard-timestamp'))).toEqual(['1767225600', '1767225601', '1767225603', '1767225603']);
    expect(hook.received.every(verified)).toBe(true);
  });

  test('a refused connection is retried too, and Retry-After is honoured', async () => {
    const hook = notificationReceiver((n) => (n === 1 ? new Response(null, { status: 429, headers: { 'retry-after': '5' } }) : new Response(null, { status: 200 })));
    servers.push(hook);
    const clock = new ManualClock();
    const n = notifier(hook.url, clock);
    n.notify(joined('a'));
    await until(() => n.stats().state === 'waiting', 'a retry');
    clock.advance(4999);
    expect(n.stats()).toMatchObject({ state: 'waiting', delivered: 0 });
    expect(hook.received).toHaveLength(1);
    clock.advance(1);
    await until(() => n.stats().delivered === 1, 'delivery');

    // Nothing listens on a closed server's port: a network error.
    const closed = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response() });
    const deadUrl = `http://127.0.0.1:${closed.port}/`;
    closed.stop(true);
    const dead = notifier(deadUrl, clock);
    dead.notify(joined('x'));
    await until(() => dead.stats().state === 'waiting', 'a retry after a network error');
  });

  test('a 4xx is final: logged, dropped, and the next one goes out', async () => {
    const hook = notificationReceiver((n) => new Response(null, { status: n === 1 ? 400 : 204 }));
    servers.push(hook);
    const log: string[] = [];
    const n = notifier(hook.url, new ManualClock(), 100, log);
    n.notify(joined('a'));
    n.notify(joined('b'));
    await until(() => n.stats().delivered === 1, 'the second delivered');
    expect(n.stats()).toMatchObject({ failed: 1, delivered: 1, queued: 0 });
    expect(log).toEqual(['notification given up {"type":"peer-joined","notificationId":"n1","attempts":1,"reason":"HTTP 400"}']);
  });

  test('after maxAttempts a notification is given up and logged', async () => {
    const hook = notificationReceiver(() => new Response(null, { status: 503 }));
    servers.push(hook);
    const log: string[] = [];
    const clock = new ManualClock();
    const n = notifier(hook.url, clock, 100, log);
    n.notify(joined('a'));
    for (let attempt = 1; attempt < timing.maxAttempts; attempt++) {
      await until(() => n.stats().state === 'waiting', `retry ${attempt}`);
      clock.advance(timing.maxBackoffMs);
    }
    await until(() => n.stats().failed === 1, 'the give-up');
    expect(hook.received).toHaveLength(timing.maxAttempts);
    expect(log).toEqual([`notification given up {"type":"peer-joined","notificationId":"n1","attempts":${timing.maxAttempts},"reason":"HTTP 503"}`]);
  });

  test('an attempt without an answer times out on the clock and is retried', async () => {
    let calls = 0;
    const hook = notificationReceiver(() => (++calls === 1 ? new Promise<Response>(() => {}) : new Response(null, { status: 204 })));
    servers.push(hook);
    const clock = new ManualClock();
    const n = notifier(hook.url, clock);
    n.notify(joined('a'));
    await until(() => hook.received.length === 1, 'the first attempt');
    clock.advance(timing.timeoutMs);
    await until(() => n.stats().state === 'waiting', 'the retry after the timeout');
    clock.advance(timing.backoffMs);
    await until(() => n.stats().delivered === 1, 'delivery');
  });
});

describe('a backend down for long', () => {
  test('the queue stays bounded: the oldest waiting are dropped, and the count is logged', async () => {
    let up = false;
    const hook = notificationReceiver(() => new Response(null, { status: up ? 204 : 503 }));
    servers.push(hook);
    const log: string[] = [];
    const clock = new ManualClock();
    const n = notifier(hook.url, clock, 5, log);
    for (let i = 0; i < 20; i++) n.notify(joined(`p${i}`));
    expect(n.stats()).toMatchObject({ queued: 5, dropped: 15 });
    expect(log).toEqual(['notification queue full: dropping the oldest until NOTIFY_URL accepts them again {"capacity":5}']);
    await until(() => n.stats().state === 'waiting', 'a retry');
    up = true;
    clock.advance(timing.backoffMs);
    await until(() => n.stats().queued === 0, 'the queue to drain');
    // The one being retried, then the newest four: the oldest waiting ones went first.
    expect(hook.received.map((r) => r.json.peerId).slice(1)).toEqual(['p0', 'p16', 'p17', 'p18', 'p19']);
    expect(log.at(-1)).toBe('NOTIFY_URL accepts notifications again {"dropped":15}');
  });
});
