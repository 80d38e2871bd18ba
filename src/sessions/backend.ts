import type { Delivered, EventSink } from '../delivery/delivery';
import type { SignalError } from '../errors';
import type { SignalBody } from './model';
import type { WithPayloadJson } from './payload-source';
import type { SessionMode } from './server-peer';
import type { Invite, PeerAuth, Role } from './store';

/**
 * A value now, or later. The single-process backend answers synchronously, so that its hot path pays
 * for no promise; the cluster backend answers with promises. Callers `await` either.
 */
export type Awaitable<T> = T | Promise<T>;

/** Applies `fn` to `value` at once when it is there, or when it arrives. */
export function after<T, R>(value: Awaitable<T>, fn: (value: T) => R): Awaitable<R> {
  return value instanceof Promise ? (value.then(fn) as Promise<R>) : fn(value);
}

/** What an admission check sees of a session: only these, so that any backend can show them. */
export interface AdmitSession {
  readonly peers: { readonly size: number };
  /** With `invites`, only those peer ids may register; the check only ever looks up the registering one. */
  readonly managed?: { readonly invites?: ReadonlyMap<string, Invite> };
  /** A peer other than the registering one that holds the publisher role, if there is one. */
  readonly publisher?: string;
}

/** What an admission check sees of the registration an id has now. */
export interface AdmitPeer {
  readonly auth?: PeerAuth;
}

/**
 * Decides, inside the registration and so atomically with it, whether this peer may register: it
 * sees the session (undefined when new) and the peer's current registration (undefined when not
 * registered), throws to refuse, and returns the credentials to keep with the new registration. It is
 * a pure function of what it is shown: a backend may run it again when the state changed under it.
 */
export type Admit = (session: AdmitSession | undefined, current: AdmitPeer | undefined) => PeerAuth | undefined;

/** A sender's token, as checked against the credentials kept with its registration (`PeerAccess.sender`). */
export interface SenderCredential {
  /** Whether the token is checked at all: not in open mode. */
  readonly checked: boolean;
  /** The presented token's hash, for a store that compares it with the kept one itself (the cluster's script); undefined when none came. */
  readonly hash: string | undefined;
  /** Throws 401 (no token) or 403 (not the peer's) unless `auth` lets the token through. */
  check(auth: PeerAuth | undefined): void;
  /** The refusal of a comparison made by the store: the same one `check` throws. */
  refusal(why: 'unauthorized' | 'forbidden'): SignalError;
}

/** One message of a sender's own rate (PEER_MESSAGE_RATE_PER_S), taken before the store answers. */
export interface RateTicket {
  /** Takes it: the refusal (429) when none is left, else undefined. */
  take(): SignalError | undefined;
  /** Gives back what `take` took: the message was refused before its rate counted (404, 401, 403). */
  giveBack(): void;
}

/**
 * The checks a route asks `send` to make of the sender once it is found (404 first), before anything
 * of the message: its token (401, 403), then its rate (429). Inside `send`, so that the cluster makes
 * them in the same Redis step as the message.
 */
export interface SendGuard {
  readonly credential: SenderCredential;
  readonly rate: RateTicket;
}

/** What became of one message of a batch: written, held, or refused (the error it would have had alone). */
export type MessageOutcome = Delivered | SignalError;

/** What the route knows of a registering client besides its credentials. */
export interface RegisterOrigin {
  /** The client's address (see `clientAddress`); undefined for a request handled in-process. */
  address?: string;
  /** Whether it may create a relay session (RELAY_MODE and its credentials); undefined: it may. */
  createsRelay?: boolean;
}

export interface Registration {
  /** The other peers of the session. */
  peers: string[];
  auth: PeerAuth | undefined;
  /** The Last-Event-ID that a first stream can be opened with. */
  lastEventId: number;
  mode: SessionMode;
}

export interface SessionOptions {
  idleMs: number;
  invites?: ReadonlyMap<string, Invite>;
  /** @default 'mesh' */
  mode?: SessionMode;
}

/** A session as the admin API shows it. */
export interface SessionSnapshot {
  id: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
  managed: boolean;
  mode: SessionMode;
  peers: { id: string; role: Role | null; streaming: boolean }[];
  /** With an allow-list: every invited peer id. */
  invites?: { peerId: string; role: Role }[];
}

/** The credentials kept with each registration: what access control reads. */
export interface PeerDirectory {
  /** The peer's credentials; throws `session_not_found` or `peer_not_found`. */
  peerAuth(sessionId: string, peerId: string): Awaitable<PeerAuth | undefined>;
  /** Every registered peer of a session with its credentials; throws `session_not_found`. */
  sessionAuths(sessionId: string): Awaitable<readonly { readonly id: string; readonly auth?: PeerAuth }[]>;
}

/**
 * Sessions, peers and event bytes on this instance, for metrics. In one process that is everything; in
 * a cluster, the peers this instance serves (it holds their stream or, without one, their registration
 * or last stream came through it) and the sessions they are in, with the cluster's totals beside them.
 */
export interface SessionGauges {
  sessions(): number;
  peers(): number;
  /** Bytes of the events held for those peers or kept for their resume. */
  eventBytes(): number;
  /** A cluster's totals, in Redis for this prefix: set in cluster mode only. */
  readonly cluster?: Omit<SessionGauges, 'cluster'>;
}

/**
 * The signalling core as the routes and the stream transports (SSE, WebSocket) use it. `LocalSignalling`
 * is the single-process implementation (a Map of sessions, synchronous); `ClusterSignalling` keeps the
 * same semantics in Redis for several instances (asynchronous). Every method throws (or rejects with)
 * a `SignalError` to refuse.
 */
export interface SignallingBackend extends PeerDirectory {
  /**
   * Joins (creating the session if new, in `mode`, mesh by default) or takes over a registered id; the
   * others get `new-peer`. A `mode` other than the existing session's is refused. `origin`, the key of
   * the client's address (`addressKey`), counts the registration against that address's caps (see
   * `AddressHoldings`), released when it ends.
   */
  register(sessionId: string, peerId: string, admit?: Admit, mode?: SessionMode, origin?: RegisterOrigin): Awaitable<Registration>;
  /**
   * The server's offer to a peer of a relay session that has just registered, for its registration's
   * answer (`?offer=inline`; see `ServerPeer.offerNow`). Undefined when it cannot be had at once: the
   * offer then comes over the peer's stream, as without the flag. Either way the peer gets it once.
   */
  serverOffer(sessionId: string, peerId: string): Promise<unknown>;
  /** An empty session that waits for its peers (the admin API). */
  createSession(sessionId: string, options: SessionOptions): Awaitable<{ mode: SessionMode }>;
  /**
   * Forwards a client message to its target, or to every other peer when it names none. With `guard`,
   * the sender's token and rate are checked first (see `SendGuard`); the refusals of those checks are
   * not counted as rejected messages.
   */
  send(sessionId: string, peerId: string, body: SignalBody & WithPayloadJson, guard?: SendGuard): Awaitable<Delivered>;
  /**
   * Forwards a batch of client messages from one sender, in order, each as `send` would alone: the
   * sender is found and `guard`'s token checked once (those refusals refuse the batch), then each
   * message meets its own checks (see `batchItemRefusal`) and gets its own outcome. `before[i]` is a
   * refusal of message `i` decided before the store (the client address's rate). In a cluster, one
   * Redis step for the whole batch.
   */
  sendBatch(
    sessionId: string,
    peerId: string,
    bodies: readonly (SignalBody & WithPayloadJson)[],
    guard?: SendGuard,
    before?: readonly (SignalError | undefined)[],
  ): Awaitable<MessageOutcome[]>;
  /**
   * Attaches a peer's stream (any `EventSink`: SSE, WebSocket) and writes what it has not received,
   * after `lastEventId` when the client resumes. On refusal the sink is closed.
   */
  connect(sessionId: string, peerId: string, sink: EventSink, lastEventId?: number): Awaitable<void>;
  /** The peer leaves: the others get `peer-left`; the last one out ends the session. */
  leave(sessionId: string, peerId: string): Awaitable<void>;
  /** Every peer gets `session-closed`, then every stream ends and the session is gone. */
  closeSession(sessionId: string): Awaitable<void>;
  /** One session as the admin API shows it; undefined when there is none. */
  snapshot(sessionId: string): Awaitable<SessionSnapshot | undefined>;
  /** Every session. */
  snapshots(): Awaitable<SessionSnapshot[]>;
  /** Ends every stream and timer (server shutdown), and every stream that opens from now on. */
  shutdown(): void;
  /**
   * A drain's first step, before `shutdown()`: a cluster hands the relay sessions this instance owns to
   * other instances within `deadlineMs`. One process has nowhere to hand them.
   */
  handover?(deadlineMs: number): Promise<void>;
  /** Releases connections after `shutdown()` (the cluster's Redis clients); nothing to do in one process. */
  close(): Promise<void>;
  readonly gauges: SessionGauges;
}
