import { createHmac } from 'node:crypto';
import type { Cancel, Clock } from '../clock';
import type { Config } from '../config';
import type { Logger } from '../log/logger';
import type { SessionEvent } from '../sessions/events';

export type NotifyConfig = Pick<Config, 'notifyUrl' | 'notifySecret' | 'notifyQueue'>;

export interface NotifierDeps {
  clock: Clock;
  newId: () => string;
  /** One line per noteworthy event: drops, give-ups, recovery. Never the secret or the URL. */
  logger: Logger;
  fetch?: typeof fetch;
}

export interface NotifierTiming {
  /** An attempt that has no answer after this long is abandoned and retried. */
  timeoutMs: number;
  /** The first retry waits this long; each next one twice as long, up to `maxBackoffMs`. */
  backoffMs: number;
  maxBackoffMs: number;
  /** Attempts per notification before it is given up (and logged). */
  maxAttempts: number;
}

export const DEFAULT_TIMING: NotifierTiming = { timeoutMs: 10_000, backoffMs: 1000, maxBackoffMs: 60_000, maxAttempts: 10 };

/** The body POSTed to NOTIFY_URL: a session event with a unique id (receivers dedupe on it) and its time. */
export type Notification = SessionEvent & { id: string; time: string };

interface Pending {
  id: string;
  type: SessionEvent['type'];
  body: string;
  attempts: number;
}

export interface NotifierStats {
  queued: number;
  delivered: number;
  dropped: number;
  failed: number;
  /** sending: a POST is in flight; waiting: the next attempt is scheduled. */
  state: 'idle' | 'sending' | 'waiting';
}

/**
 * The value of `X-Switchboard-Signature`: `sha256=` and the hex HMAC-SHA256, keyed with NOTIFY_SECRET,
 * of `<X-Switchboard-Timestamp>.<body>`. Signing the timestamp lets a receiver refuse replays.
 */
export function notificationSignature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * POSTs session events to the customer's backend, one at a time and in order, signed, retried with
 * exponential backoff on network errors, timeouts, 408, 429 and 5xx. Signalling only ever appends to
 * a bounded queue, so a slow or dead backend never slows it: when the queue is full, the oldest waiting
 * notification is dropped, and the drops are counted in the log.
 */
export class Notifier {
  private readonly queue: Pending[] = [];
  private state: NotifierStats['state'] = 'idle';
  private retry: Cancel | undefined;
  private inFlight: AbortController | undefined;
  private stopped = false;
  private delivered = 0;
  private dropped = 0;
  private failed = 0;
  /** Drops since the last log line about them. */
  private droppedUnreported = 0;

  constructor(
    private readonly url: string,
    private readonly secret: string,
    private readonly capacity: number,
    private readonly deps: NotifierDeps,
    private readonly timing: NotifierTiming = DEFAULT_TIMING,
  ) {}

  static fromConfig(config: NotifyConfig, deps: NotifierDeps, timing?: NotifierTiming): Notifier | undefined {
    if (!config.notifyUrl || !config.notifySecret) return undefined;
    return new Notifier(config.notifyUrl, config.notifySecret, config.notifyQueue, deps, timing);
  }

  /** A `SessionListener`: queues the event and returns at once. */
  readonly notify = (event: SessionEvent): void => {
    if (this.stopped) return;
    const id = this.deps.newId();
    const notification: Notification = { ...event, id, time: new Date(this.deps.clock.now()).toISOString() };
    this.queue.push({ id, type: event.type, body: JSON.stringify(notification), attempts: 0 });
    if (this.queue.length > this.capacity) this.dropOldest();
    this.pump();
  };

  stats(): NotifierStats {
    return { queued: this.queue.length, delivered: this.delivered, dropped: this.dropped, failed: this.failed, state: this.state };
  }

  /** Stops sending: cancels the scheduled retry and the request in flight. What is queued is not sent. */
  stop(): void {
    this.stopped = true;
    this.retry?.();
    this.retry = undefined;
    this.inFlight?.abort();
  }

  private dropOldest(): void {
    // The head is the one being sent or retried; the oldest that merely waits goes.
    const index = this.state === 'idle' ? 0 : 1;
    this.queue.splice(index, 1);
    this.dropped++;
    if (this.droppedUnreported++ === 0) {
      this.deps.logger.warn('notification queue full: dropping the oldest until NOTIFY_URL accepts them again', { capacity: this.capacity });
    }
  }

  private pump(): void {
    if (this.stopped || this.state !== 'idle') return;
    const item = this.queue[0];
    if (!item) return;
    this.state = 'sending';
    item.attempts++;
    const timestamp = String(Math.floor(this.deps.clock.now() / 1000));
    const controller = new AbortController();
    this.inFlight = controller;
    const cancelTimeout = this.deps.clock.schedule(this.timing.timeoutMs, () => controller.abort());
    const send = this.deps.fetch ?? fetch;
    send(this.url, {
      method: 'POST',
      body: item.body,
      // A redirect would send the signed body somewhere else: it counts as a failure instead.
      redirect: 'manual',
      signal: controller.signal,
      headers: {
        'content-type': 'application/json',
        'user-agent': 'switchboard-notify',
        'x-switchboard-event': item.type,
        'x-switchboard-id': item.id,
        'x-switchboard-timestamp': timestamp,
        'x-switchboard-signature': notificationSignature(this.secret, timestamp, item.body),
      },
    })
      .then(async (response) => {
        await response.body?.cancel().catch(() => {});
        return { status: response.status, retryAfter: response.headers.get('retry-after') };
      })
      .catch(() => ({ status: 0, retryAfter: null }))
      .then(({ status, retryAfter }) => {
        cancelTimeout();
        this.inFlight = undefined;
        if (this.stopped) return;
        this.settle(item, status, retryAfter);
      });
  }

  private settle(item: Pending, status: number, retryAfter: string | null): void {
    const retryable = status === 0 || status === 408 || status === 429 || status >= 500;
    if (status >= 200 && status < 300) {
      this.delivered++;
      if (this.droppedUnreported > 0) {
        this.deps.logger.warn('NOTIFY_URL accepts notifications again', { dropped: this.droppedUnreported });
        this.droppedUnreported = 0;
      }
    } else if (!retryable || item.attempts >= this.timing.maxAttempts) {
      this.failed++;
      const why = status === 0 ? 'no answer' : `HTTP ${status}`;
      this.deps.logger.warn('notification given up', { type: item.type, notificationId: item.id, attempts: item.attempts, reason: why });
    } else {
      this.state = 'waiting';
      this.retry = this.deps.clock.schedule(this.backoff(item.attempts, retryAfter), () => {
        this.retry = undefined;
        this.state = 'idle';
        this.pump();
      });
      return;
    }
    if (this.queue[0] === item) this.queue.shift();
    this.state = 'idle';
    this.pump();
  }

  private backoff(attempts: number, retryAfter: string | null): number {
    const exponential = Math.min(this.timing.maxBackoffMs, this.timing.backoffMs * 2 ** (attempts - 1));
    const asked = retryAfter !== null && /^\d{1,6}$/.test(retryAfter) ? Number(retryAfter) * 1000 : 0;
    return Math.min(this.timing.maxBackoffMs, Math.max(exponential, asked));
  }
}
