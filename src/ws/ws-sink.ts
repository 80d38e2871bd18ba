import type { Clock } from '../clock';
import type { EventMembers, EventSink } from '../delivery/delivery';
import type { WriteBatcher } from '../delivery/write-batcher';
import type { SignalError } from '../errors';
import { type Heartbeat, type Pingable, pingEvent } from '../sse/heartbeat';
import { errorFrame, eventFrame } from './frames';

/** What the sink needs of a server WebSocket (Bun's `ServerWebSocket` has it). */
export interface WsSocket {
  /** Bun's status: bytes written (> 0), -1 queued in user space behind a full kernel buffer, 0 dropped. */
  sendText(data: string): number;
  /** Runs `fn` with the socket corked: its sends leave in one write when `fn` returns. */
  cork(fn: () => void): void;
  getBufferedAmount(): number;
  /** Sends a WebSocket ping frame (the client's WebSocket answers it by itself). */
  ping(): number;
  close(code?: number, reason?: string): void;
  terminate(): void;
}

export interface WsSinkOptions {
  heartbeat: Heartbeat;
  clock: Clock;
  batcher: WriteBatcher;
  /** Bytes queued in user space ahead of the socket before writes are refused (events then wait in the mailbox). */
  highWaterBytes: number;
  /**
   * Events waiting for the socket (batched, or in Bun's buffer) before writes are refused. Kept well
   * inside the resume window, so that the events a dropped socket loses can always be replayed.
   */
  maxQueued: number;
}

/** Close codes of the WebSocket transport; 4000 + an HTTP status refuses a connection the way the HTTP route would. */
export const CloseCode = {
  normal: 1000,
  policyViolation: 1008,
  messageTooBig: 1009,
  refused: (error: SignalError) => 4000 + error.status,
} as const;

/** Acks a socket may be owed while it is attached (a cluster's attach waits for Redis). */
const MAX_EARLY_ACKS = 256;

/**
 * One peer's WebSocket as an `EventSink`: the mailbox writes events to it exactly as to an SSE stream.
 * Frames are batched per turn of the event loop (`WriteBatcher`). At most `maxQueued` events or
 * `highWaterBytes` wait ahead of a slow client; past that writes are refused until Bun's `drain` reports
 * its buffer empty, and a socket still full a whole ping interval later is dropped (the client resumes).
 */
export class WsSink implements EventSink, Pingable {
  /** The id of the last event written: pings carry it, as on the SSE stream. */
  private lastId = 0;
  private closed = false;
  /** While the connection is being attached, a close is only noted, so that a refusal can still be sent. */
  private opening = true;
  /** A close asked for while the attach step ran (a cluster's attach waits for Redis), carried out after it. */
  private closeWanted: { code: number; reason?: string } | undefined;
  /** Acks given while the attach step ran: they follow the opening ping (and what was held), as on one process. */
  private early: string[] | undefined;
  /** Frames of this turn of the loop, not yet given to the socket; unset when none (most of the time). */
  private batch: string[] | undefined;
  /** Events given to the socket since Bun's buffer was last seen empty: how many a dropped socket may lose. */
  private queued = 0;
  private blocked = false;
  private stalled = false;
  /** A WebSocket ping went out at the last heartbeat and no pong has come back yet. */
  private awaitingPong = false;
  private closeListener: (() => void) | undefined;
  private drainListener: (() => void) | undefined;

  constructor(
    private readonly ws: WsSocket,
    private readonly options: WsSinkOptions,
  ) {
    options.heartbeat.add(this);
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

  /** A ping event tells the client at once that it is live, and the id it starts from. */
  begin(cursor: number): void {
    this.lastId = cursor;
    this.enqueue(eventFrame(cursor, pingEvent(this.options.clock.now())));
  }

  write(id: number, members: EventMembers): boolean {
    if (this.closed || this.blocked) return false;
    this.enqueue(eventFrame(id, members));
    this.lastId = id;
    if ((this.batch?.length ?? 0) + this.queued >= this.options.maxQueued) this.blocked = true;
    return true;
  }

  /**
   * The heartbeat: the seed's ping event, as on SSE, and a WebSocket ping. A client that has not answered
   * the previous WebSocket ping, a whole interval ago, is gone (a device that lost power sends no FIN):
   * the socket is dropped, and the peer times out unless it comes back.
   */
  ping(event: EventMembers): void {
    if (this.closed) return;
    if (this.awaitingPong) return this.abort('no pong within a ping interval');
    this.awaitingPong = true;
    this.ws.ping();
    if (this.blocked) {
      // Full for a whole ping interval: nobody reads this socket.
      if (this.stalled) this.abort('the reader stalled');
      this.stalled = true;
      return;
    }
    this.enqueue(eventFrame(this.lastId, event));
  }

  /** Bun's pong handler: the client answered the last WebSocket ping. */
  ponged(): void {
    this.awaitingPong = false;
  }

  /** A frame outside the event stream (an ack); refused only when the socket is gone. */
  reply(frame: string): void {
    // Closed: nothing to answer, unless a close waits for the attach step (its answers go out before it).
    if (this.closed && !this.closeWanted) return;
    if (!this.opening) {
      if (!this.closed) this.enqueue(frame);
      return;
    }
    const early = (this.early ??= []);
    early.push(frame);
    // No client needs more answers than this before its socket is attached: a flood is dropped, not kept.
    if (early.length > MAX_EARLY_ACKS) this.abort('too many frames before the socket was attached');
  }

  /** Gives the batch to the socket in one corked write; the `WriteBatcher` calls it. */
  flush(): void {
    const frames = this.batch;
    this.batch = undefined;
    if (!frames || this.closed) return;
    let dropped = false;
    this.ws.cork(() => {
      for (const frame of frames) {
        if (this.ws.sendText(frame) === 0) {
          dropped = true;
          break;
        }
      }
    });
    // Dropped: the socket is closed or past Bun's own limit.
    if (dropped) return this.abort('the socket dropped a frame');
    const buffered = this.ws.getBufferedAmount();
    if (buffered === 0) this.queued = 0;
    else this.queued += frames.length;
    if (this.queued >= this.options.maxQueued || buffered > this.options.highWaterBytes) {
      // Wait for Bun's drain.
      this.blocked = true;
    } else if (this.blocked) {
      // Only the batch was full, and it is gone.
      this.resume();
    }
  }

  /** Bun's drain: the socket took some of its buffer. Writes resume once all of it is gone. */
  drained(): void {
    this.stalled = false;
    if (this.batch || this.ws.getBufferedAmount() > 0) return;
    this.queued = 0;
    if (this.blocked) this.resume();
  }

  /** Ends the attach step: refuses the connection with `error`, or carries out a close asked for meanwhile. */
  opened(error?: SignalError): void {
    this.opening = false;
    const early = this.early;
    this.early = undefined;
    if (error) {
      this.ws.sendText(errorFrame(null, error));
      for (const frame of early ?? []) this.ws.sendText(frame);
      this.ws.close(CloseCode.refused(error), error.code);
      this.end();
    } else if (this.closeWanted) {
      for (const frame of early ?? []) this.ws.sendText(frame);
      this.ws.close(this.closeWanted.code, this.closeWanted.reason);
    } else {
      for (const frame of early ?? []) this.enqueue(frame);
    }
  }

  close(): void {
    this.closeWith(CloseCode.normal);
  }

  /** Closes after the frames already written (an abusive client: 1008, 1009). */
  closeWith(code: number, reason?: string): void {
    if (this.closed) return;
    if (this.opening) {
      this.closeWanted = { code, reason };
      this.end();
      return;
    }
    this.flush();
    this.ws.close(code, reason);
    this.end();
  }

  abort(_reason: string): void {
    if (this.closed) return;
    // What is queued for a reader this slow is not worth sending: drop the connection, free its buffer.
    this.batch = undefined;
    this.early = undefined;
    this.closeWanted = undefined;
    this.ws.terminate();
    this.end();
  }

  /** Bun's close: the client went away or the socket was closed. */
  closedBySocket(): void {
    this.batch = undefined;
    this.end();
  }

  private enqueue(frame: string): void {
    if (this.batch) {
      this.batch.push(frame);
      return;
    }
    this.batch = [frame];
    this.options.batcher.add(this);
  }

  private resume(): void {
    this.blocked = false;
    this.drainListener?.();
  }

  private end(): void {
    if (this.closed) return;
    this.closed = true;
    this.options.heartbeat.delete(this);
    const listener = this.closeListener;
    this.closeListener = undefined;
    this.drainListener = undefined;
    listener?.();
  }
}
