import type { Clock } from '../clock';
import type { EventSink } from '../delivery/delivery';
import type { SignalError } from '../errors';
import type { Heartbeat, Pingable } from '../sse/heartbeat';
import { errorFrame, eventFrame } from './frames';

/** What the sink needs of a server WebSocket (Bun's `ServerWebSocket` has it). */
export interface WsSocket {
  /** Bun's status: bytes written (> 0), -1 queued in user space behind a full kernel buffer, 0 dropped. */
  sendText(data: string): number;
  getBufferedAmount(): number;
  close(code?: number, reason?: string): void;
  terminate(): void;
}

export interface WsSinkOptions {
  heartbeat: Heartbeat;
  clock: Clock;
  /** Bytes queued in user space ahead of the socket before writes are refused (events then wait in the mailbox). */
  highWaterBytes: number;
  /**
   * Events queued in user space before writes are refused. Kept well inside the resume window, so that
   * the events a dropped socket loses can always be replayed.
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

/**
 * One peer's WebSocket as an `EventSink`: the mailbox writes events to it exactly as to an SSE stream. It
 * keeps at most `maxQueued` events or `highWaterBytes` queued ahead of a slow client; past that it refuses
 * writes until Bun's `drain` reports the queue empty, and a socket still full a whole ping interval later
 * is dropped (the client resumes).
 */
export class WsSink implements EventSink, Pingable {
  /** The id of the last event written: pings carry it, as on the SSE stream. */
  private lastId = 0;
  private closed = false;
  /** While the connection is being attached, a close is only noted, so that a refusal can still be sent. */
  private opening = true;
  private closeWanted = false;
  /** Events sent since Bun's buffer was last empty: how many a dropped socket may lose from it. */
  private queued = 0;
  private blocked = false;
  private stalled = false;
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

  /** Nothing to replay: a ping tells the client at once that it is live, and the id it is at. */
  begin(cursor: number): void {
    this.lastId = cursor;
    this.ping(JSON.stringify({ type: 'ping', time: new Date(this.options.clock.now()).toISOString() }));
  }

  write(id: number, json: string): boolean {
    if (this.closed || this.blocked) return false;
    if (!this.send(eventFrame(id, json))) return false;
    this.lastId = id;
    return true;
  }

  ping(json: string): void {
    if (this.closed) return;
    if (this.blocked) {
      // Full for a whole ping interval: nobody reads this socket.
      if (this.stalled) this.abort('the reader stalled');
      this.stalled = true;
      return;
    }
    this.send(eventFrame(this.lastId, json));
  }

  /** A frame outside the event stream (an ack); refused only when the socket is gone. */
  reply(frame: string): void {
    if (!this.closed) this.send(frame);
  }

  /** Bun's drain: the socket took some of its queue. Writes resume once all of it is gone. */
  drained(): void {
    this.stalled = false;
    if (this.ws.getBufferedAmount() > 0) return;
    this.queued = 0;
    if (!this.blocked) return;
    this.blocked = false;
    this.drainListener?.();
  }

  /** Ends the attach step: refuses the connection with `error`, or carries out a close asked for meanwhile. */
  opened(error?: SignalError): void {
    this.opening = false;
    if (error) {
      this.ws.sendText(errorFrame(null, error));
      this.ws.close(CloseCode.refused(error), error.code);
      this.end();
    } else if (this.closeWanted) {
      this.ws.close(CloseCode.normal);
    }
  }

  close(): void {
    this.closeWith(CloseCode.normal);
  }

  /** Closes after the frames already sent (an abusive client: 1008, 1009). */
  closeWith(code: number, reason?: string): void {
    if (this.closed) return;
    if (this.opening) this.closeWanted = true;
    else this.ws.close(code, reason);
    this.end();
  }

  abort(_reason: string): void {
    if (this.closed) return;
    // What is queued for a reader this slow is not worth sending: drop the connection, free its buffer.
    this.ws.terminate();
    this.end();
  }

  /** Bun's close: the client went away or the socket was closed. */
  closedBySocket(): void {
    this.end();
  }

  private send(frame: string): boolean {
    const status = this.ws.sendText(frame);
    if (status === 0) {
      // Dropped: the socket is closed or past Bun's own limit.
      this.abort('the socket dropped a frame');
      return false;
    }
    if (status > 0) {
      // Written through to the kernel: nothing of ours is queued.
      this.queued = 0;
    } else if (++this.queued >= this.options.maxQueued || this.ws.getBufferedAmount() > this.options.highWaterBytes) {
      this.blocked = true;
    }
    return true;
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
