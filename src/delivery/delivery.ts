import type { Topic } from './rules';

/**
 * An event as both stores keep it and every sink is given it: the text of its JSON object after the
 * opening brace (`"type":"offer",…}`). Each transport writes its own opening in front of it (`data: {` on
 * SSE, `{"id":7,` on WebSocket), so that the frame is the one copy made of the event. A whole object's text
 * would have to be cut after its brace for the WebSocket's id, and cutting a text that was put together
 * (a client's event is the server's fields around the payload as the client sent it) joins all of it first:
 * a second copy of every message. An event carries no line break (see `eventMembers`).
 */
export type EventMembers = string;

/** The members of an event made by `JSON.stringify`, which writes no line break: a cut of a flat text, not a copy. */
export const eventMembers = (json: string): EventMembers => json.slice(1);

/** An event's JSON object text, for a reader that parses it. */
export const eventJson = (members: EventMembers): string => `{${members}`;

/** A peer as the delivery layer knows it. */
export interface PeerAddress {
  readonly sessionId: string;
  readonly peerId: string;
}

/**
 * Where a connected peer's events are written: an SSE stream today. A sink is attached to one
 * mailbox at a time. It takes a bounded number of events ahead of its client; past that it refuses
 * writes until it drains, and the events wait in the mailbox.
 */
export interface EventSink {
  readonly isOpen: boolean;
  /** Tells the client its position when nothing is replayed, so that a reconnect can resume. */
  begin(cursor: number): void;
  /** Writes one event. Returns false when the sink is closed or full; the event was not written. */
  write(id: number, members: EventMembers): boolean;
  /** Ends the stream after what was written so far. Idempotent. */
  close(): void;
  /** Drops the connection at once, unsent events included: for a reader that cannot keep up. */
  abort(reason: string): void;
  /** Registers the one callback run when the sink closes, whoever closed it. */
  onClose(fn: () => void): void;
  /** Registers the one callback run when a full sink can take events again. */
  onDrain(fn: () => void): void;
}

export type Delivered = 'sent' | 'queued';

/**
 * Who holds which peer's stream, and the per-peer event log behind it. The single-process
 * implementation is `LocalDelivery`; a multi-instance one keeps the same contract.
 */
export interface Delivery {
  /**
   * Starts a peer's mailbox, or a new incarnation of it on takeover: its stream closes and what was held is
   * dropped. Returns the event id before the incarnation's first event: the Last-Event-ID that a first
   * stream can be opened with, so that even its loss before its first bytes loses nothing.
   */
  open(peer: PeerAddress): number;
  /**
   * Throws `queue_full` unless every one of `peers` can take a client message of `bytes` now: each under its
   * held events and bytes, and the process under its byte budget (written events kept for resume give way).
   */
  checkRoom(peers: readonly PeerAddress[], bytes: number): void;
  /**
   * Appends one event to the peer's log and writes it to the peer's stream if one is attached; `size` is
   * its `eventSize`, given when the maker counted it (a client's event, whose text is not joined to count it).
   * Server events (`new-peer`, …) are never refused: they supersede the held events they make stale (see
   * `Topic`); client messages past the bounds throw `queue_full`.
   */
  deliver(peer: PeerAddress, members: EventMembers, topic: Topic, size?: number): Delivered;
  /**
   * Attaches a stream, replacing any other, and writes what the peer has not received: everything held,
   * and with `lastEventId` everything after it. Throws `superseded` or `resume_gap` when it cannot.
   */
  attach(peer: PeerAddress, sink: EventSink, lastEventId?: number): void;
  /** Detaches `sink` if it is still the peer's stream; returns whether it was. */
  detach(peer: PeerAddress, sink: EventSink): boolean;
  isAttached(peer: PeerAddress): boolean;
  /** Forgets the peer: writes `finalEvent` if given, closes its stream, drops its log. */
  close(peer: PeerAddress, finalEvent?: EventMembers): void;
  /** Closes every stream (shutdown); logs stay so that clients could resume. */
  closeAll(): void;
  /** Bytes of every event held or kept for resume, for the gauge. */
  readonly eventBytes: number;
}
