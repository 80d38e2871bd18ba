import type { PeerAddress } from '../delivery/delivery';
import { SignalError } from '../errors';
import type { Signalling } from '../sessions/service';
import { type AckId, ackFrame, BadFrame, errorFrame, internalErrorFrame, isMalformed, parseClientFrame } from './frames';
import { CloseCode, type WsSinkOptions, type WsSocket, WsSink } from './ws-sink';

export interface WsConnectionOptions extends WsSinkOptions {
  /** Malformed frames (bad JSON, wrong fields, oversize) one connection may send; the next one closes it. */
  maxBadFrames: number;
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

  constructor(
    private readonly signalling: Signalling,
    private readonly peer: PeerAddress,
    private readonly lastEventId: number | undefined,
    private readonly options: WsConnectionOptions,
  ) {}

  open(ws: WsSocket): void {
    const sink = new WsSink(ws, this.options);
    this.sink = sink;
    try {
      this.signalling.connect(this.peer.sessionId, this.peer.peerId, sink, this.lastEventId);
    } catch (e) {
      if (e instanceof SignalError) return sink.opened(e);
      // A bug: the connection closes (connect closed the sink), the server goes on.
      console.error('internal error', `ws /ws/${this.peer.sessionId}/${this.peer.peerId}`, e);
    }
    sink.opened();
  }

  message(_ws: WsSocket, data: string | Uint8Array): void {
    const sink = this.sink;
    // A socket being closed (taken over, refused) no longer speaks for the peer.
    if (!sink?.isOpen) return;
    const frame = parseClientFrame(data);
    if (frame instanceof BadFrame) return this.refuse(sink, frame.id, frame.error);
    const id: AckId = frame.id ?? null;
    try {
      sink.reply(ackFrame(id, this.signalling.send(this.peer.sessionId, this.peer.peerId, frame)));
    } catch (e) {
      if (!(e instanceof SignalError)) {
        console.error('internal error', `ws /ws/${this.peer.sessionId}/${this.peer.peerId}`, e);
        return sink.reply(internalErrorFrame(id));
      }
      this.refuse(sink, id, e);
    }
  }

  drain(): void {
    this.sink?.drained();
  }

  pong(): void {
    this.sink?.ponged();
  }

  close(): void {
    this.sink?.closedBySocket();
  }

  /** Answers with the error envelope; past `maxBadFrames` malformed frames the connection is closed. */
  private refuse(sink: WsSink, id: AckId, error: SignalError): void {
    sink.reply(errorFrame(id, error));
    if (!isMalformed(error) || ++this.badFrames <= this.options.maxBadFrames) return;
    const code = error.code === 'payload_too_large' ? CloseCode.messageTooBig : CloseCode.policyViolation;
    sink.closeWith(code, `more than ${this.options.maxBadFrames} malformed frames`);
  }
}
