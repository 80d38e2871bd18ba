import type { Clock } from '../clock';
import type { Config } from '../config';
import type { Delivered, Delivery, EventSink, PeerAddress } from '../delivery/delivery';
import { countMessage, type DeliveryObserver, noObserver, type PeerLeftReason } from '../delivery/observer';
import { fromPeer, peerNotice, serverSignal } from '../delivery/rules';
import { refusals, SignalError } from '../errors';
import { AddressHoldings, type HoldingsConfig } from '../limits/address-holdings';
import { addressKey } from '../limits/client-ip';
import { type Logger, silentLogger } from '../log/logger';
import type { RelayCapacity } from '../relay/capacity';
import type { Admit, MessageOutcome, RegisterOrigin, Registration, SendGuard, SessionGauges, SessionOptions, SessionSnapshot, SignallingBackend } from './backend';
import type { SessionEvent, SessionListener } from './events';
import type { SignalBody } from './model';
import type { WithPayloadJson } from './payload-source';
import {
  batchItemRefusal,
  checkCaps,
  checkPeerId,
  clientEvent,
  MEDIA_SIGNALS,
  messageRefusal,
  modeFor,
  relayRegisterRefusal,
  sees,
  serverEvents,
  serverPeerEvent,
  type Visible,
} from './rules';
import { SERVER_PEER_ID, type ServerPeer, type SessionMode } from './server-peer';
import type { PeerAuth, PeerRecord, Role, Session, SessionStore } from './store';

export type { Admit } from './backend';

export type SignallingConfig = Pick<Config, 'peerTimeoutMs' | 'maxSessions' | 'maxPeersPerSession'> & HoldingsConfig;

export interface SignallingDeps {
  store: SessionStore;
  delivery: Delivery;
  clock: Clock;
  /** Told of sessions created and closed, peers joined and left. */
  listener?: SessionListener;
  /** Counts messages, joins, leaves and resumes (metrics). */
  observer?: DeliveryObserver;
  logger?: Logger;
  /** The `switchboard` peer of relay sessions; without it, registering a relay session is refused. */
  serverPeer?: ServerPeer;
  /** The relay's places (MAX_RELAY_PEERS): every peer of a relay session holds one while registered. */
  relayCapacity?: RelayCapacity;
  /** Told of each offer and answer one peer of a mesh session sends another (offer → answer time, metrics). */
  negotiation?: { meshSignal(sessionId: string, from: string, to: string, type: string): void };
}

/**
 * How long a registration's answer waits for the server's offer (`?offer=inline`): making one takes a
 * few milliseconds, its candidates at most OFFER_GATHER_MS. Past this it goes over the stream.
 */
export const INLINE_OFFER_WAIT_MS = 250;

const roleOf = (record: PeerRecord): Role => record.auth?.role ?? 'viewer';
const visible = (record: PeerRecord): Visible => ({ id: record.id, role: roleOf(record) });

/** A publisher of the session other than `peerId`, if there is one. */
function publisherOf(session: Session, peerId: string): string | undefined {
  for (const peer of session.peers.values()) if (peer.id !== peerId && roleOf(peer) === 'publisher') return peer.id;
  return undefined;
}

/**
 * The seed's signalling semantics: sessions of peers whose messages it forwards to each other. The server,
 * never the client, sets `senderId`. Everything a peer is sent goes through its mailbox in `Delivery`,
 * so order holds per pair and nothing is lost while a peer's stream is closed. This is the
 * single-process backend: every method answers synchronously, from a Map.
 */
export class LocalSignalling implements SignallingBackend {
  private readonly observer: DeliveryObserver;
  private readonly logger: Logger;
  /** What each client address holds alive: the sessions it created, the registrations it made. */
  private readonly holdings: AddressHoldings;
  /** Set by `shutdown()`: streams that open from then on end at once, so that clients go elsewhere. */
  private stopped = false;

  constructor(
    private readonly config: SignallingConfig,
    private readonly deps: SignallingDeps,
  ) {
    this.observer = deps.observer ?? noObserver;
    this.logger = deps.logger ?? silentLogger;
    this.holdings = new AddressHoldings();
  }

  /**
   * Joins (creating the session if new, in `mode`, mesh by default) or takes over a registered id; the
   * others learn of it with `new-peer`. A `mode` other than the existing session's is refused (409).
   * A peer of a relay session takes one of the relay's places (`origin.address` counts per address).
   */
  register(sessionId: string, peerId: string, admit?: Admit, mode?: SessionMode, origin?: RegisterOrigin): Registration {
    const { store, delivery } = this.deps;
    checkPeerId(peerId);
    const existing = store.get(sessionId);
    const current = existing?.peers.get(peerId);
    const sessionMode = modeFor(sessionId, existing?.mode, mode, this.unavailable);
    // The key of the client's address: what the per-address caps count.
    const from = origin?.address === undefined ? undefined : addressKey(origin.address);
    const counts = {
      exists: existing !== undefined,
      registered: current !== undefined,
      sessions: store.size,
      peers: existing?.peers.size ?? 0,
      ownSessions: from === undefined ? 0 : this.holdings.sessionsOf(from),
      ownPeers: from === undefined ? 0 : this.holdings.peersOf(from),
      holdsIt: current !== undefined && current.origin === from,
      hasOrigin: from !== undefined,
    };
    checkCaps(counts, this.config, sessionId, 'server');
    const publisher = existing && publisherOf(existing, peerId);
    const auth = admit?.(existing && { peers: existing.peers, managed: existing.managed, publisher }, current);
    const relayRefused = relayRegisterRefusal(sessionId, sessionMode, { exists: existing !== undefined, publisher, role: auth?.role, createsRelay: origin?.createsRelay });
    if (relayRefused) throw relayRefused;
    // Last of the checks: nothing refuses the registration once it holds its place.
    const relaySlot = sessionMode === 'relay' ? this.deps.relayCapacity?.take(origin?.address, current?.relaySlot) : undefined;
    let session = existing;
    if (!session) {
      session = store.create(sessionId, this.deps.clock.now(), sessionMode);
      session.createdBy = from;
      this.holdings.session(from, 1);
      this.emit({ type: 'session-created', sessionId, by: 'register' });
    }
    let record = current;
    if (!record) {
      record = { id: peerId, expiry: undefined };
      session.peers.add(record);
    }
    record.auth = auth;
    record.relaySlot = relaySlot;
    if (!current || current.origin !== from) {
      // A takeover moves the registration to the address that made it now.
      this.holdings.peer(current?.origin, -1);
      this.holdings.peer(from, 1);
      record.origin = from;
    }
    if (session.managed) {
      session.managed.idle?.();
      session.managed.idle = undefined;
    }
    // A new incarnation either way: a takeover closes the old stream and drops what was held for it.
    const lastEventId = delivery.open({ sessionId, peerId });
    this.armExpiry(session, record);
    this.emit({ type: 'peer-joined', sessionId, peerId, role: auth?.role, takeover: current !== undefined });

    const peers: string[] = [];
    const joined = serverEvents.newPeer(peerId);
    const notice = peerNotice(peerId);
    const self = visible(record);
    for (const other of session.peers.values()) {
      if (other === record) continue;
      const them = visible(other);
      if (sees(session.mode, self, them)) peers.push(other.id);
      if (sees(session.mode, them, self)) delivery.deliver({ sessionId, peerId: other.id }, joined, notice);
    }
    this.observer.peerJoined();
    // The old connection goes now; the new one, and the server's offer, once the peer's stream opens.
    if (session.mode === 'relay') this.deps.serverPeer?.joined(sessionId, peerId, roleOf(record));
    return { peers, auth, lastEventId, mode: session.mode };
  }

  serverOffer(sessionId: string, peerId: string): Promise<unknown> {
    const { store, serverPeer } = this.deps;
    if (store.get(sessionId)?.mode !== 'relay' || !serverPeer) return Promise.resolve(undefined);
    return serverPeer.offerNow(sessionId, peerId, INLINE_OFFER_WAIT_MS);
  }

  /**
   * Creates an empty session that waits for its peers (the admin API): it stays until closed, or until it
   * has been without peers for `idleMs`; with `invites`, only those peer ids may register in it.
   */
  createSession(sessionId: string, options: SessionOptions): Session {
    const { store } = this.deps;
    for (const peerId of options.invites?.keys() ?? []) checkPeerId(peerId);
    const mode = modeFor(sessionId, undefined, options.mode, this.unavailable);
    if (store.get(sessionId)) throw refusals.sessionExists(sessionId);
    if (store.size >= this.config.maxSessions) throw refusals.tooManySessions(this.config.maxSessions, 'server');
    const session = store.create(sessionId, this.deps.clock.now(), mode);
    session.managed = { idleMs: options.idleMs, invites: options.invites, idle: undefined };
    this.emit({ type: 'session-created', sessionId, by: 'admin' });
    this.armIdle(session);
    return session;
  }

  /** Whether a peer's stream is attached right now. */
  isStreaming(sessionId: string, peerId: string): boolean {
    return this.deps.delivery.isAttached({ sessionId, peerId });
  }

  /** Forwards a client message to its target, or to every other peer when it names none. */
  send(sessionId: string, peerId: string, body: SignalBody & WithPayloadJson, guard?: SendGuard): Delivered {
    if (guard) {
      // Not counted as rejected messages: these are the route's refusals, as before a message is read.
      guard.credential.check(this.peer(this.session(sessionId), peerId).auth);
      const limited = guard.rate.take();
      if (limited) throw limited;
    }
    return countMessage(this.observer, body.type, () => this.forward(sessionId, peerId, body));
  }

  /** Forwards a batch of client messages, in order, each with its own outcome (see `SignallingBackend.sendBatch`). */
  sendBatch(
    sessionId: string,
    peerId: string,
    bodies: readonly (SignalBody & WithPayloadJson)[],
    guard?: SendGuard,
    before: readonly (SignalError | undefined)[] = [],
  ): MessageOutcome[] {
    const auth = this.peer(this.session(sessionId), peerId).auth;
    guard?.credential.check(auth);
    return bodies.map((body, i) => {
      const refused = batchItemRefusal(before[i], guard?.rate);
      if (refused) return refused;
      try {
        return countMessage(this.observer, body.type, () => this.forward(sessionId, peerId, body));
      } catch (e) {
        // A refusal is this message's outcome; anything else is a bug, and fails the request.
        if (e instanceof SignalError) return e;
        throw e;
      }
    });
  }

  private forward(sessionId: string, peerId: string, body: SignalBody & WithPayloadJson): Delivered {
    const session = this.session(sessionId);
    this.peer(session, peerId);
    const refused = messageRefusal(peerId, body);
    if (refused) throw refused;
    const { delivery, serverPeer } = this.deps;
    if (session.mode === 'relay') {
      if (body.target === SERVER_PEER_ID && serverPeer) {
        serverPeer.receive(sessionId, peerId, body.type, body.payload);
        return 'sent';
      }
      if (MEDIA_SIGNALS.has(body.type)) throw refusals.mediaToServerOnly(sessionId, body.type, SERVER_PEER_ID);
    }
    const event = clientEvent(peerId, body);

    if (body.target !== undefined) {
      if (!session.peers.has(body.target)) throw refusals.targetNotFound(sessionId, body.target);
      const delivered = delivery.deliver({ sessionId, peerId: body.target }, event.members, fromPeer(peerId), event.size);
      if (body.type === 'offer' || body.type === 'answer') this.deps.negotiation?.meshSignal(sessionId, peerId, body.target, body.type);
      return delivered;
    }

    // A broadcast reaches every other peer or none of them.
    const targets: PeerAddress[] = [];
    for (const other of session.peers.values()) {
      if (other.id === peerId) continue;
      targets.push({ sessionId, peerId: other.id });
    }
    delivery.checkRoom(targets, event.size);
    const topic = fromPeer(peerId);
    let result: Delivered = 'sent';
    for (const address of targets) {
      if (delivery.deliver(address, event.members, topic, event.size) === 'queued') result = 'queued';
    }
    return result;
  }

  /**
   * Attaches a peer's stream and writes what it has not yet received (after `lastEventId` when the client
   * resumes). When the stream ends the peer has the peer timeout to come back.
   */
  connect(sessionId: string, peerId: string, sink: EventSink, lastEventId?: number): void {
    const session = this.session(sessionId);
    const record = this.peer(session, peerId);
    const address = { sessionId, peerId };
    const { delivery } = this.deps;
    if (this.stopped) {
      // Draining: the client reconnects at once, to another instance behind the same address.
      sink.close();
      return;
    }
    sink.onClose(() => {
      if (delivery.detach(address, sink) && session.peers.get(peerId) === record) this.armExpiry(session, record);
    });
    try {
      delivery.attach(address, sink, lastEventId);
    } catch (e) {
      sink.close();
      if (lastEventId !== undefined && e instanceof SignalError && (e.code === 'resume_gap' || e.code === 'superseded')) this.observer.resumed(e.code);
      throw e;
    }
    if (lastEventId !== undefined) this.observer.resumed('resumed');
    if (delivery.isAttached(address)) {
      record.expiry?.();
      record.expiry = undefined;
      // The server's offer goes into the new incarnation's mailbox after the registration's own events.
      if (session.mode === 'relay') this.deps.serverPeer?.reachable(sessionId, peerId);
    }
  }

  readonly gauges: SessionGauges = {
    sessions: () => this.deps.store.size,
    peers: () => {
      let peers = 0;
      for (const session of this.deps.store.values()) peers += session.peers.size;
      return peers;
    },
    eventBytes: () => this.deps.delivery.eventBytes,
  };

  peerAuth(sessionId: string, peerId: string): PeerAuth | undefined {
    return this.peer(this.session(sessionId), peerId).auth;
  }

  sessionAuths(sessionId: string): PeerRecord[] {
    return [...this.session(sessionId).peers.values()];
  }

  snapshot(sessionId: string): SessionSnapshot | undefined {
    const session = this.deps.store.get(sessionId);
    return session && this.snapshotOf(session);
  }

  snapshots(): SessionSnapshot[] {
    return [...this.deps.store.values()].map((s) => this.snapshotOf(s));
  }

  private snapshotOf(session: Session): SessionSnapshot {
    const snapshot: SessionSnapshot = {
      id: session.id,
      createdAt: session.createdAt,
      managed: session.managed !== undefined,
      mode: session.mode,
      peers: [...session.peers.values()].map((p) => ({ id: p.id, role: p.auth?.role ?? null, streaming: this.isStreaming(session.id, p.id) })),
    };
    const invites = session.managed?.invites;
    if (invites) snapshot.invites = [...invites].map(([peerId, { role }]) => ({ peerId, role }));
    return snapshot;
  }

  /** The peer leaves: the others get `peer-left`; the last one out ends the session. */
  leave(sessionId: string, peerId: string): void {
    const session = this.session(sessionId);
    this.remove(session, this.peer(session, peerId), 'left');
  }

  /** Every peer gets `session-closed`, then every stream ends and the session is gone. */
  closeSession(sessionId: string): void {
    const session = this.session(sessionId);
    this.dropSession(session);
    session.managed?.idle?.();
    for (const record of session.peers.values()) {
      this.holdings.peer(record.origin, -1);
      record.expiry?.();
      record.relaySlot?.release();
      this.deps.delivery.close({ sessionId, peerId: record.id }, serverEvents.sessionClosed);
    }
    this.ended(session, 'closed');
  }

  /**
   * What the server peer sends to a peer of a relay session: an event in its mailbox, `senderId:
   * "switchboard"`, over whichever stream the peer reads. False when the peer is not registered (any more).
   */
  readonly fromServer = (sessionId: string, peerId: string, type: string, payload: unknown): boolean => {
    const record = this.deps.store.get(sessionId)?.peers.get(peerId);
    if (!record) return false;
    this.deps.delivery.deliver({ sessionId, peerId }, serverPeerEvent(type, payload), serverSignal(type));
    return true;
  };

  /**
   * Ends every stream and timer (server shutdown), and every stream that opens from now on.
   * Registrations stay until the process exits.
   */
  shutdown(): void {
    this.stopped = true;
    this.deps.serverPeer?.shutdown();
    for (const session of this.deps.store.values()) {
      for (const record of session.peers.values()) {
        record.expiry?.();
        record.expiry = undefined;
      }
      session.managed?.idle?.();
    }
    this.deps.delivery.closeAll();
  }

  async close(): Promise<void> {}

  private armExpiry(session: Session, record: PeerRecord): void {
    record.expiry?.();
    record.expiry = this.deps.clock.schedule(this.config.peerTimeoutMs, () => {
      record.expiry = undefined;
      if (session.peers.get(record.id) !== record) return;
      if (this.deps.store.get(session.id) !== session) return;
      this.logger.info('peer timed out', { sessionId: session.id, peerId: record.id, afterMs: this.config.peerTimeoutMs });
      this.remove(session, record, 'timeout');
    });
  }

  /** An admin-created session without peers ends after its idle time. */
  private armIdle(session: Session): void {
    const managed = session.managed;
    if (!managed) return;
    managed.idle?.();
    managed.idle = this.deps.clock.schedule(managed.idleMs, () => {
      managed.idle = undefined;
      if (this.deps.store.get(session.id) !== session || session.peers.size > 0) return;
      this.dropSession(session);
      this.ended(session, 'idle');
    });
  }

  private remove(session: Session, record: PeerRecord, reason: PeerLeftReason): void {
    const { delivery } = this.deps;
    record.expiry?.();
    record.expiry = undefined;
    record.relaySlot?.release();
    session.peers.delete(record.id);
    this.holdings.peer(record.origin, -1);
    this.observer.peerLeft(reason);
    delivery.close({ sessionId: session.id, peerId: record.id });
    if (session.mode === 'relay') this.deps.serverPeer?.left(session.id, record.id);
    this.emit({ type: 'peer-left', sessionId: session.id, peerId: record.id, reason });
    if (session.peers.size === 0) {
      if (session.managed) return this.armIdle(session);
      this.dropSession(session);
      this.ended(session, 'empty');
      return;
    }
    const left = serverEvents.peerLeft(record.id);
    const notice = peerNotice(record.id);
    const gone = visible(record);
    for (const other of session.peers.values()) {
      if (sees(session.mode, visible(other), gone)) delivery.deliver({ sessionId: session.id, peerId: other.id }, left, notice);
    }
  }

  /** Takes a session out of the store; what its creator holds goes down by one. */
  private dropSession(session: Session): void {
    this.deps.store.delete(session.id);
    this.holdings.session(session.createdBy, -1);
  }

  /** A session is gone from the store: the relay lets go of its connections, listeners hear of it. */
  private ended(session: Session, reason: Extract<SessionEvent, { type: 'session-closed' }>['reason']): void {
    if (session.mode === 'relay') this.deps.serverPeer?.closed(session.id);
    this.emit({ type: 'session-closed', sessionId: session.id, reason });
  }

  /** Relay sessions need the server peer (RELAY_MODE other than off). */
  private readonly unavailable = (mode: SessionMode): SignalError | undefined => (mode === 'relay' && !this.deps.serverPeer ? refusals.relayOff() : undefined);

  private emit(event: Parameters<SessionListener>[0]): void {
    this.deps.listener?.(event);
  }

  private session(sessionId: string): Session {
    const session = this.deps.store.get(sessionId);
    if (!session) throw refusals.sessionNotFound(sessionId);
    return session;
  }

  private peer(session: Session, peerId: string): PeerRecord {
    const record = session.peers.get(peerId);
    if (!record) throw refusals.peerNotFound(session.id, peerId);
    return record;
  }
}
