import type { EventMembers, EventSink } from '../delivery/delivery';
import type { Batched, WriteBatcher } from '../delivery/write-batcher';
import { eventFrame, idFrame, retryFrame } from './frame';
import type { Heartbeat, Pingable } from './heartbeat';

export interface PeerStreamOptions {
  heartbeat: Heartbeat;
  /** The most events that may wait ahead of the socket once it is full (see `streamQueue`). */
  maxQueued: number;
  /** Reconnection delay announced to EventSource clients. */
  retryMs: number;
  /** Where the frames of a turn of the loop wait, to leave in one write after it. */
  batcher: WriteBatcher;
}

/** What each stream has of its own: what runs once it ends. */
export interface PeerStreamHooks {
  /** Runs once when the stream ends, however it ends (after the sink's own close listener). */
  onEnd?: () => void;
}

/** A batch of frames this long (in UTF-16 units) is written at once rather than after the turn. */
const BATCH_LIMIT = 64 * 1024;

/** The headers of a stream's response (and of its HEAD). */
export const STREAM_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
};

/**
 * One peer's `text/event-stream` response. It owns its stream so that every way a stream ends (the
 * client goes away, a write fails, the server closes it, the reader stalls) goes through `end()`
 * exactly once. It is its stream's underlying source (a Bun direct stream: frames are
 * written to the response's sink as they come, with no queue, controller or reader of the stream's
 * own). Bun cancels it (`cancel`) however the client goes away: the connection closes, HTTP/2 resets
 * the stream, or the client left before the response was made; so it listens to no abort signal of the
 * request, which would be one more object per stream (that signal and the response's headers, which
 * the route now makes in one piece, were about 1 KiB of each of thousands of idle streams).
 *
 * Writes: the frames of a turn of the loop, and the stream's end, reach the sink together after it
 * (`WriteBatcher`; a batch past BATCH_LIMIT at once): written from inside the request that caused
 * them (a message, a leave), they would be written before that request's own answer, whose headers
 * would then each go out alone.
 * A stream found gone when its frames are written ends then; what it was given stays in the
 * mailbox's resume window, as for any connection that drops.
 *
 * Room: once a write finds the socket's buffer full (the sink answers with a promise), at most
 * `maxQueued` frames more are written until it drains; past that `write` refuses, and the mailbox
 * holds the events until `onDrain`. Frames written before the response starts (the held events of a
 * resume) wait in one string, with the same bound.
 */
export class PeerStream implements EventSink, Pingable, Batched, Bun.DirectUnderlyingSource {
  /** The response's body; the response, with its headers (`STREAM_HEADERS` and the route's), is the route's. */
  readonly body: ReadableStream;
  private controller: ReadableStreamDirectController | undefined;
  /** Frames written before the response started: sent with the retry frame when it does. */
  private early = '';
  /** Frames written since the batch's last flush, once the response started. */
  private batch = '';
  /** In the batcher's list: `flush` will run. */
  private batched = false;
  /** The sink was closed (at the flush after `end`). */
  private sinkClosed = false;
  /** Frames written since the socket's buffer was found full, or before the response started. */
  private queued = 0;
  /** The sink's buffer is full: it drains when the promise of that write resolves. */
  private full = false;
  private lastId = 0;
  private closed = false;
  /** How it ended, for a stream that ends before its response started: undefined when gracefully. */
  private failure: Error | undefined;
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
    // The DOM library's type of the constructor, which the project's types take, knows no direct streams.
    this.body = new ReadableStream(this as unknown as UnderlyingDefaultSource);
    options.heartbeat.add(this);
  }

  /** A direct stream (DirectUnderlyingSource): Bun's server calls `pull` once, with the response's sink. */
  get type(): 'direct' {
    return 'direct';
  }

  /** The response starts: the retry frame (Bun sends no headers before the first body bytes), then what was written before. */
  pull(controller: ReadableStreamDirectController): void {
    // A reader of the body (app.handle's caller) pulls once per read: the stream started at the first.
    if (this.controller) return;
    this.controller = controller;
    const frames = retryFrame(this.options.retryMs) + this.early;
    this.early = '';
    this.queued = 0;
    if (this.closed) {
      // Ended before it started: what was written goes first unless it ended in failure.
      if (!this.failure) controller.write(frames);
      this.closeSink();
      return;
    }
    // Room again for what the mailbox held back while the response had not started.
    if (this.put(frames) && !this.full) this.drained();
  }

  /** The client went away (Bun cancels the body). */
  cancel(): void {
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

  write(id: number, members: EventMembers): boolean {
    if (this.closed) return false;
    if (!this.hasRoom) {
      this.blocked = true;
      return false;
    }
    this.send(eventFrame(id, members));
    this.lastId = id;
    return true;
  }

  ping(event: EventMembers): void {
    if (this.closed) return;
    if (!this.hasRoom) {
      // Full for a whole ping interval: nobody reads this stream.
      if (this.stalled) this.abort('the reader stalled');
      this.stalled = true;
      return;
    }
    this.send(eventFrame(this.lastId, event));
  }

  close(): void {
    this.end(true);
  }

  abort(reason: string): void {
    this.end(false, new Error(reason));
  }

  /** Whether one more frame may be written now. */
  private get hasRoom(): boolean {
    return (!this.full && this.controller !== undefined) || this.queued < this.options.maxQueued;
  }

  private send(frame: string): void {
    if (!this.controller) {
      this.early += frame;
      this.queued++;
      return;
    }
    this.batch += frame;
    if (this.full) this.queued++;
    // A large batch goes at once, so that a full socket is found while the frames are still coming.
    if (this.batch.length >= BATCH_LIMIT) this.flush();
    else this.schedule();
  }

  private schedule(): void {
    if (this.batched) return;
    this.batched = true;
    this.options.batcher.add(this);
  }

  /** The batcher's turn: what was written since the last one goes to the sink, then the end if it came. */
  flush(): void {
    this.batched = false;
    const frames = this.batch;
    this.batch = '';
    if (frames && !this.failure) this.put(frames);
    if (this.closed) this.closeSink();
  }

  private closeSink(): void {
    if (this.sinkClosed || !this.controller) return;
    this.sinkClosed = true;
    try {
      if (this.failure) this.controller.close(this.failure);
      else this.controller.close();
    } catch {
      // Already closed or errored by the other side.
    }
  }

  /** Writes to the sink; false (and the stream ended) when the client is gone. */
  private put(frames: string): boolean {
    const controller = this.controller as ReadableStreamDirectController;
    let written: number | Promise<number>;
    try {
      written = controller.write(frames);
    } catch {
      this.end(false);
      return false;
    }
    // The sink answers 0 once its destination has gone.
    if (written === 0) {
      this.end(false);
      return false;
    }
    if (!this.full && typeof written !== 'number') {
      this.full = true;
      this.queued = 1;
      written.then(
        () => this.drained(),
        () => this.end(false),
      );
    }
    return true;
  }

  /** The socket took what the sink held: room again. */
  private drained(): void {
    this.full = false;
    this.queued = 0;
    this.stalled = false;
    if (!this.blocked || this.closed) return;
    this.blocked = false;
    queueMicrotask(() => this.drainListener?.());
  }

  /** @param graceful let what was written drain before the end; otherwise drop the connection */
  private end(graceful: boolean, reason?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.failure = graceful ? undefined : (reason ?? new Error('stream ended'));
    this.options.heartbeat.delete(this);
    // A graceful end lets the batch go first; a failure drops it. Either way the sink closes at the flush.
    if (this.controller) this.schedule();
    const listener = this.closeListener;
    this.closeListener = undefined;
    this.drainListener = undefined;
    listener?.();
    this.onEnd?.();
  }
}
