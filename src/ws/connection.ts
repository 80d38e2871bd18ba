import type { Delivered } from '../delivery/delivery';
import { refusalOf, SignalError } from '../errors';
import { type Logger, silentLogger } from '../log/logger';
import type { Awaitable, MessageOutcome, SignallingBackend } from '../sessions/backend';
import { type AckId, ackFrame, BadFrame, ClientBatch, type ClientFrame, errorFrame, internalErrorFrame, isMalformed, parseClientFrame } from './frames';
import { CloseCode, WsSink, type WsSinkOptions, type WsSocket } from './ws-sink';

/** The message limits of POST /message, applied to each frame: they throw `rate_limited`. */
export interface MessageLimits {
  message(addressOf: () => string | undefined): void;
  peerMessage(sessionId: string, peerId: string): void;
}

export interface WsConnectionOptions extends WsSinkOptions {
  /** Malformed frames (bad JSON, wrong fields, oversize) one connection may send; the next one closes it. */
  maxBadFrames: number;
  limits?: MessageLimits;
  /** Where a bug on a connection is reported: the app's logger, which redacts credentials. */
  logger?: Logger;
}

/**
 * One WebSocket peer: Bun's socket handlers for it (`open`, `message`, `drain`, `pong`, `close`; the
 * server calls them on the connection's `data`). The peer registers first with POST /register, as an SSE
 * peer does; on open a `WsSink` is attached to its mailbox, so that held events, resume and takeover work
 * as on SSE. Each text frame is a POST /message body, answered with an ack.
 */
export class WsConnection {
  private sink: WsSink | undefined;
  private badFrames = 0;
  /**
   * Acks still waiting for a backend that answers later (cluster mode): the next ack goes out after
   * them, so that acks keep the order of their frames.
   */
  private pendingAcks: Promise<void> | undefined;

  constructor(
    private readonly signalling: SignallingBackend,
    // The ids rather than an address object: one object less for each of many idle connections.
    private readonly sessionId: string,
    private readonly peerId: string,
    private readonly lastEventId: number | undefined,
    private readonly options: WsConnectionOptions,
    /** Gives back the connection's place among its address's open streams. */
    private readonly release: () => void = () => {},
    /** The client's address, for the per-address message limit. */
    private readonly address?: string,
  ) {}

  open(ws: WsSocket): void {
    const sink = new WsSink(ws, this.options);
    this.sink = sink;
    let connected: Awaitable<void>;
    try {
      connected = this.signalling.connect(this.sessionId, this.peerId, sink, this.lastEventId);
    } catch (e) {
      return this.openFailed(sink, e);
    }
    if (connected instanceof Promise)
      connected.then(
        () => sink.opened(),
        (e: unknown) => this.openFailed(sink, e),
      );
    else sink.opened();
  }

  private openFailed(sink: WsSink, e: unknown): void {
    if (e instanceof SignalError) return sink.opened(e);
    // A bug: the connection closes (connect closed the sink), the server goes on.
    this.failed('open', e);
    sink.opened();
  }

  message(_ws: WsSocket, data: string | Uint8Array): void {
    const sink = this.sink;
    // A socket being closed (taken over, refused) no longer speaks for the peer.
    if (!sink?.isOpen) return;
    const frame = parseClientFrame(data);
    if (frame instanceof BadFrame) return this.refuse(sink, frame.ids, frame.error);
    if (frame instanceof ClientBatch) return this.batch(sink, frame.frames);
    const id: AckId = frame.id ?? null;
    let sent: Awaitable<Delivered>;
    try {
      // The limits of POST /message, in its order: the address's, then the peer's.
      this.options.limits?.message(() => this.address);
      this.options.limits?.peerMessage(this.sessionId, this.peerId);
      sent = this.signalling.send(this.sessionId, this.peerId, frame);
    } catch (e) {
      return this.answer(sink, [id], e);
    }
    // The common case, answered at once without a closure: one process, no ack waiting before it.
    if (!(sent instanceof Promise) && !this.pendingAcks) return sink.reply(ackFrame(id, sent));
    this.acknowledge(
      sent,
      (delivered) => sink.reply(ackFrame(id, delivered)),
      (e) => this.answer(sink, [id], e),
    );
  }

  /** A batch frame: each message counts against the limits, goes in order, and gets its own ack. */
  private batch(sink: WsSink, frames: readonly ClientFrame[]): void {
    const ids = frames.map((frame) => frame.id ?? null);
    const { limits } = this.options;
    const before = frames.map(() =>
      refusalOf(() => {
        limits?.message(() => this.address);
        limits?.peerMessage(this.sessionId, this.peerId);
      }),
    );
    let sent: Awaitable<MessageOutcome[]>;
    try {
      sent = this.signalling.sendBatch(this.sessionId, this.peerId, frames, undefined, before);
    } catch (e) {
      return this.answer(sink, ids, e);
    }
    this.acknowledge(
      sent,
      (outcomes) =>
        outcomes.forEach((outcome, i) => {
          const id = ids[i] ?? null;
          if (outcome instanceof SignalError) this.refuse(sink, [id], outcome);
          else sink.reply(ackFrame(id, outcome));
        }),
      (e) => this.answer(sink, ids, e),
    );
  }

  /** Acks now what the backend answered now; what it answers later, after the acks still waiting, so that acks keep the order of their frames. */
  private acknowledge<T>(sent: Awaitable<T>, ack: (value: T) => void, fail: (e: unknown) => void): void {
    if (!(sent instanceof Promise) && !this.pendingAcks) return ack(sent);
    const previous = this.pendingAcks ?? Promise.resolve();
    const next = previous
      .then(() => sent)
      .then(ack, fail)
      .finally(() => {
        if (this.pendingAcks === next) this.pendingAcks = undefined;
      });
    this.pendingAcks = next;
  }

  /** The acks of a frame (each message of a batch) that was refused, or that failed. */
  private answer(sink: WsSink, ids: readonly AckId[], e: unknown): void {
    if (!(e instanceof SignalError)) {
      this.failed('message', e);
      for (const id of ids) sink.reply(internalErrorFrame(id));
      return;
    }
    this.refuse(sink, ids, e);
  }

  /** Logs a bug as the HTTP routes' error handler does: one error line naming the peer. */
  private failed(stage: 'open' | 'message', error: unknown): void {
    (this.options.logger ?? silentLogger).error('internal error', { transport: 'ws', stage, sessionId: this.sessionId, peerId: this.peerId, error });
  }

  drain(): void {
    this.sink?.drained();
  }

  pong(): void {
    this.sink?.ponged();
  }

  close(): void {
    this.sink?.closedBySocket();
    this.release();
  }

  /**
   * Answers with the error envelope, once for each id (each message of a batch refused whole); past
   * `maxBadFrames` malformed frames the connection is closed.
   */
  private refuse(sink: WsSink, ids: readonly AckId[], error: SignalError): void {
    for (const id of ids) sink.reply(errorFrame(id, error));
    if (!isMalformed(error) || ++this.badFrames <= this.options.maxBadFrames) return;
    const code = error.code === 'payload_too_large' ? CloseCode.messageTooBig : CloseCode.policyViolation;
    sink.closeWith(code, `more than ${this.options.maxBadFrames} malformed frames`);
  }
}
