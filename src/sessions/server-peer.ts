import type { Role } from './store';

/** The id the server itself has in relay sessions; no client may register it, in any session. */
export const SERVER_PEER_ID = 'switchboard';

/**
 * How media flows in a session, chosen by whoever creates it: `mesh`, peer to peer (the publisher
 * sends one copy per viewer), or `relay`, through the server (the publisher sends one copy, the
 * server forwards it to every viewer).
 */
export type SessionMode = 'mesh' | 'relay';

/**
 * The server's own peer in relay sessions (src/relay). The signalling service tells it who joins and
 * leaves a relay session and hands it what peers send to `switchboard`; it answers through
 * `ServerOutbox`, into the peers' own mailboxes. Calls run synchronously inside the service: they must
 * be quick, and only `receive` may throw (a `SignalError`, for input the server cannot use).
 */
export interface ServerPeer {
  /**
   * A peer registered in a relay session, or registered again (a takeover: its old connection is dead).
   * Nothing is allocated for it yet: that waits for `reachable`.
   */
  joined(sessionId: string, peerId: string, role: Role): void;
  /**
   * The peer's event stream (SSE or WebSocket) is attached: the server can reach it, so its connection
   * (werift, a UDP socket, a DTLS certificate) is made now and the server's offer sent, once per
   * registration; a stream that reconnects changes nothing.
   */
  reachable(sessionId: string, peerId: string): void;
  /**
   * `reachable` for a peer that asked for the server's offer in its registration's answer
   * (`?offer=inline`): its connection is made now, and its first offer, made within `waitMs`, is given
   * back rather than put in its mailbox. Undefined when it cannot be had that soon (the engine is still
   * loading, the peer has its connection already, the offer took longer): what the server offers then
   * reaches the peer over its stream, as for any peer.
   */
  offerNow(sessionId: string, peerId: string, waitMs: number): Promise<unknown>;
  /** A peer left a relay session (left, timed out, or the session closed). */
  left(sessionId: string, peerId: string): void;
  /** `POST /message` with `target: "switchboard"`; throws a `SignalError` for a message it cannot take. */
  receive(sessionId: string, peerId: string, type: string, payload: unknown): void;
  /** The relay session is gone. */
  closed(sessionId: string): void;
  /** Server shutdown: every connection ends. */
  shutdown(): void;
}

/** How the server peer reaches a peer: an event `{ type, payload, senderId: "switchboard" }` in its mailbox. */
export type ServerOutbox = (sessionId: string, peerId: string, type: string, payload: unknown) => boolean;
