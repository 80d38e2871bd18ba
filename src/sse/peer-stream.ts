import type { EventSink } from '../delivery/delivery';
import { eventFrame, idFrame, retryFrame } from './frame';
import type { Heartbeat, Pingable } from './heartbeat';

const encoder = new TextEncoder();

export interface PeerStreamOptions {
  heartbeat: Heartbeat;
  /** Counts queued events up to the most that may wait ahead of the socket (see `streamQueue`). */
  strategy: QueuingStrategy<Uint8Array>;
  /** Reconnection delay announced to EventSource clients. */
  retryMs: number;
}

/** What each stream has of its own: the request's abort signal (fires when the client goes away), and what runs once it ends. */
export interface PeerStreamHooks {
  signal?: AbortSignal;
  /** Runs once when the stream ends, however it ends (after the sink's own close listener). */
  onEnd?: () => void;
}

/** The queuing strategy of streams that let `maxQueued` events wait ahead of the socket: one for all of them. */
export const streamStrategy = (maxQueued: number): QueuingStrategy<Uint8Array> => new CountQueuingStrategy({ highWaterMark: maxQueued });

/** The headers of a stream's response (and of its HEAD). */
export const STREAM_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
};

/**
 * One peer's `text/event-stream` response. It owns its ReadableStream so that every way a stream
 * ends (the client cancels, the request aborts, a write fails, the server closes it, the reader
 * stalls) goes through `end()` exactly once. It is its stream's underlying source (`start`, `pull`,
 * `cancel`) and the listener of the request's abort signal (`handleEvent`): thousands of idle streams
 * are held at once, and each closure less is memory less for every one of them.
 */
export class PeerStream implements EventSink, Pingable, UnderlyingDefaultSource<Uint8Array>, EventListenerObject {
  readonly response: Response;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private lastId = 0;
  private closed = false;
  /** A write was refused for lack of room: the mailbox waits for a drain. */
  private blocked = false;
  /** Full at the last ping: full again at the next one means the client reads nothing. */
  private stalled = false;
  private closeListener: (() => void) | undefined;
  private drainListener: (() => void) | undefined;
  private readonly onEnd: (() => void) | undefined;

  constructor(
    private readonly options: PeerStreamOptions,
    hooks: PeerStreamHooks = {},
  ) {
    this.onEnd = hooks.onEnd;
    hooks.signal?.addEventListener('abort', this, { once: true });
    this.response = new Response(new ReadableStream<Uint8Array>(this, options.strategy), { headers: STREAM_HEADERS });
    options.heartbeat.add(this);
  }

  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.controller = controller;
    // Bun sends no headers before the first body bytes: write at once so the client sees `open`.
    controller.enqueue(encoder.encode(retryFrame(this.options.retryMs)));
  }

  /** Called whenever the queue has room again after the socket took some of it. */
  pull(): void {
    this.stalled = false;
    if (!this.blocked) return;
    this.blocked = false;
    queueMicrotask(() => this.drainListener?.());
  }

  cancel(): void {
    this.end(false);
  }

  /** The request's abort signal fired: the client went away. */
  handleEvent(): void {
    this.end(false);
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  onClose(fn: () => void): void {
    this.closeListener = fn;
  }

  onDrain(fn: () => void): void {
    this.drainListener = fn;
  }

  begin(cursor: number): void {
    this.lastId = cursor;
    this.send(idFrame(cursor));
  }

  write(id: number, json: string): boolean {
    if (this.closed) return false;
    if ((this.controller.desiredSize ?? 0) <= 0) {
      this.blocked = true;
      return false;
    }
    if (!this.send(eventFrame(id, json))) return false;
    this.lastId = id;
    return true;
  }

  ping(json: string): void {
    if (this.closed) return;
    if ((this.controller.desiredSize ?? 0) <= 0) {
      // Full for a whole ping interval: nobody reads this stream.
      if (this.stalled) this.abort('the reader stalled');
      this.stalled = true;
      return;
    }
    this.send(eventFrame(this.lastId, json));
  }

  close(): void {
    this.end(true);
  }

  abort(reason: string): void {
    this.end(false, new Error(reason));
  }

  private send(frame: string): boolean {
    try {
      this.controller.enqueue(encoder.encode(frame));
      return true;
    } catch {
      this.end(false);
      return false;
    }
  }

  /** @param graceful let queued events drain before the end; otherwise drop the connection */
  private end(graceful: boolean, reason?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.options.heartbeat.delete(this);
    try {
      if (graceful) this.controller.close();
      else this.controller.error(reason ?? new Error('stream ended'));
    } catch {
      // Already closed or errored by the other side.
    }
    const listener = this.closeListener;
    this.closeListener = undefined;
    this.drainListener = undefined;
    listener?.();
    this.onEnd?.();
  }
}
