import { type Clock, Ticker } from '../clock';
import type { Config } from '../config';
import type { Delivered, EventSink } from '../delivery/delivery';
import { countMessage, type DeliveryObserver, noObserver } from '../delivery/observer';
import { type EventBounds, eventBounds, fromPeer, peerNotice } from '../delivery/rules';
import { refusals, SignalError } from '../errors';
import type { HoldingsConfig } from '../limits/address-holdings';
import { addressKey } from '../limits/client-ip';
import { type Logger, silentLogger } from '../log/logger';
import { clusterRelayFull, relayPeersRefusal } from '../relay/capacity';
import { IceRestartLimit } from '../relay/lazy';
import { negotiates, parseMessage } from '../relay/messages';
import type {
  Admit,
  AdmitSession,
  MessageOutcome,
  RegisterOrigin,
  Registration,
  SendGuard,
  SessionGauges,
  SessionOptions,
  SessionSnapshot,
  SignallingBackend,
} from '../sessions/backend';
import type { SessionEvent, SessionListener } from '../sessions/events';
import type { SignalBody } from '../sessions/model';
import type { WithPayloadJson } from '../sessions/payload-source';
import { batchItemRefusal, capRefusal, checkCaps, checkPeerId, clientEvent, MEDIA_SIGNALS, messageRefusal, modeFor, relayRegisterRefusal, serverEvents } from '../sessions/rules';
import type { SessionMode } from '../sessions/server-peer';
import { SERVER_PEER_ID } from '../sessions/server-peer';
import type { Invite, PeerAuth, Role } from '../sessions/store';
import { ClusterRelay, type RelayEngineLike } from './cluster-relay';
import { HeldStreams } from './held-streams';
import { peerAddress, peerIdOf, redisKey, storedEvent } from './protocol';
import { RedisLink } from './redis-link';
import { type AttachReply, boundsArgs, type CountsReply, LIBRARY, type MessageReply, type Outcome, SCRIPTS, type Script, type SenderReply, topicArgs } from './scripts';
import { SendQueue } from './send-queue';

export type ClusterConfig = Pick<
  Config,
  | 'peerTimeoutMs'
  | 'maxSessions'
  | 'maxPeersPerSession'
  | 'maxQueue'
  | 'maxPeerEventBytes'
  | 'maxEventBytes'
  | 'redisPrefix'
  | 'redisTimeoutMs'
  | 'maxRelayPeersPerIp'
  | 'relayLeaseMs'
  | 'relayIceRestartsPerMin'
> &
  HoldingsConfig & { redisUrl: string };

export interface ClusterDeps {
  /** The instances' clock: deadlines in Redis are scored with it, so it must agree across instances (NTP). */
  clock: Clock;
  /** This instance's id: the name of its channel and of the streams it holds. */
  instanceId: string;
  listener?: SessionListener;
  observer?: DeliveryObserver;
  logger?: Logger;
  /** Real time for the Redis reconnection backoff and a drain's wait on the new owners of its relay sessions. */
  timers?: Pick<Clock, 'schedule'>;
  /** The relay engine and how many peers this instance carries; without it, relay sessions are refused (RELAY_MODE=off). */
  relay?: { engine: RelayEngineLike; capacity: number };
}

/** How this instance paces its work in Redis, derived from PEER_TIMEOUT_MS. */
export interface ClusterTiming {
  /** How often the streams held here are refreshed in Redis. */
  keepaliveMs: number;
  /** How often due deadlines are looked for. */
  sweepMs: number;
  /** Added to a held peer's deadline: a holder that misses a refresh or two does not lose its peers. */
  slackMs: number;
  /** Lifetime of every key in Redis, renewed while it is in use: nothing outlives it. */
  ttlMs: number;
}

export function clusterTiming(peerTimeoutMs: number): ClusterTiming {
  const keepaliveMs = Math.min(5000, Math.max(100, Math.floor(peerTimeoutMs / 3)));
  const sweepMs = Math.min(1000, Math.max(50, Math.floor(peerTimeoutMs / 4)));
  const slackMs = 2 * keepaliveMs;
  return { keepaliveMs, sweepMs, slackMs, ttlMs: 2 * (peerTimeoutMs + slackMs) + 60_000 };
}

/** Deadlines claimed per sweep. */
const SWEEP_BATCH = 100;
/** Registrations retried when the session changed between the admission check and the write. */
const MAX_ATTEMPTS = 20;
/** How often the cluster-wide gauges are read again, at most. */
const GAUGE_REFRESH_MS = 5000;

/**
 * A registration as kept in the session's peers hash: its credentials, and `n`, its place in the
 * session (kept on takeover), so that the admin API lists peers in the order they joined, as one
 * process does.
 */
interface StoredPeer {
  tokenHash?: string;
  role?: Role;
  n: number;
  /** The key of the client address that made the registration, when known. */
  o?: string;
}

const parsePeer = (json: string): StoredPeer => JSON.parse(json) as StoredPeer;

const authOf = ({ tokenHash, role }: StoredPeer): PeerAuth | undefined => (tokenHash === undefined || role === undefined ? undefined : { tokenHash, role });

const parseAuth = (json: string): PeerAuth | undefined => authOf(parsePeer(json));

/**
 * The signalling semantics of `LocalSignalling`, for several instances that share one Redis (see
 * scripts.ts for what Redis holds). A request may land on any instance: every change is a script
 * that runs atomically in Redis, and each event is appended to its target's log there, then routed
 * to the instance that holds the target's stream, which writes it. Event ids stay consecutive per
 * peer across instances, so a stream resumes with Last-Event-ID on any of them. Timeouts are
 * deadlines in a sorted set that every instance sweeps; one claims each, so `peer-left` and the
 * notifications go out once, even when the instance that held the stream has died.
 */
export class ClusterSignalling implements SignallingBackend {
  readonly link: RedisLink;
  readonly timing: ClusterTiming;
  private readonly streams: HeldStreams;
  private readonly observer: DeliveryObserver;
  private readonly logger: Logger;
  private readonly keepalive: Ticker;
  private readonly sweeper: Ticker;
  private stopped = false;
  /** The sweep that runs, if one does. */
  private sweeping: Promise<void> | undefined;
  /** A sweep was asked for while one ran: it runs again after, with the time then. */
  private sweepAgain = false;
  /** Detaches that Redis did not take: retried when it is back. */
  private readonly undetached = new Map<string, number>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private counts: CountsReply & { at: number } = { cluster: { sessions: 0, peers: 0, eventBytes: 0 }, instance: { sessions: 0, peers: 0, eventBytes: 0 }, at: -Infinity };
  private readonly bounds: EventBounds;
  /** The messages of a turn of the loop, in one call of the send script. */
  private readonly sends: SendQueue;
  /** The media of the relay sessions this instance owns; undefined with RELAY_MODE=off. */
  readonly relay: ClusterRelay | undefined;
  /** RELAY_ICE_RESTARTS_PER_MIN, counted by the instance that takes the message (as every rate in a cluster). */
  private readonly iceRestarts: IceRestartLimit;

  constructor(
    private readonly config: ClusterConfig,
    private readonly deps: ClusterDeps,
  ) {
    this.observer = deps.observer ?? noObserver;
    this.logger = deps.logger ?? silentLogger;
    this.timing = clusterTiming(config.peerTimeoutMs);
    this.bounds = eventBounds(config);
    this.link = new RedisLink({
      url: config.redisUrl,
      library: LIBRARY,
      channel: redisKey.channel(config.redisPrefix, deps.instanceId),
      onMessage: (message) => this.streams.handle(message),
      onReconnect: () => this.reconcile(),
      logger: this.logger.child({ component: 'redis' }),
      timers: deps.timers,
      commandTimeoutMs: config.redisTimeoutMs,
    });
    this.sends = new SendQueue({
      hold: (queue) => this.link.hold(queue),
      call: (groups) => this.run(SCRIPTS.send, ...boundsArgs(this.bounds), ...groups),
      apply: (out) => this.apply(out),
    });
    this.streams = new HeldStreams({
      link: this.link,
      prefix: config.redisPrefix,
      args: () => this.args(),
      now: () => deps.clock.now(),
      observer: this.observer,
      logger: this.logger,
      bounds: this.bounds,
      detached: (key, gen) => this.detach(key, gen),
      relay: (frame) => this.relay?.frame(frame),
    });
    this.iceRestarts = new IceRestartLimit(deps.clock, config.relayIceRestartsPerMin);
    this.relay =
      deps.relay &&
      new ClusterRelay(
        { relayLeaseMs: config.relayLeaseMs, capacity: deps.relay.capacity, redisPrefix: config.redisPrefix },
        {
          engine: deps.relay.engine,
          clock: deps.clock,
          timers: deps.timers ?? deps.clock,
          logger: this.logger.child({ component: 'relay' }),
          link: this.link,
          run: (script, ...args) => this.run(script, ...args),
          apply: (out) => this.apply(out),
          bounds: this.bounds,
          track: (promise) => this.track(promise),
        },
      );
    this.keepalive = new Ticker(deps.clock, this.timing.keepaliveMs, () => void this.track(this.refresh()));
    this.sweeper = new Ticker(deps.clock, this.timing.sweepMs, () => void this.track(this.sweep()));
  }

  /** Connects to Redis (retrying in the background when it cannot) and starts the timers. */
  async start(): Promise<void> {
    this.keepalive.start();
    this.sweeper.start();
    await this.link.start();
    // The relay engine loads before this instance offers to carry a relay session: loading werift holds
    // the event loop for hundreds of milliseconds (seconds on a busy machine), longer than a lease can go
    // unrenewed, and an owner that loaded it with its first session would lose that session to another.
    await this.deps.relay?.engine.prewarm();
    this.relay?.start();
    // Its load is in Redis before the first request: placement can choose it at once.
    await this.relay?.renew();
  }

  /** This instance's share (see COUNTS for which peers and sessions are on it), and the cluster's totals. */
  readonly gauges: SessionGauges = {
    sessions: () => this.countsNow().instance.sessions,
    peers: () => this.countsNow().instance.peers,
    eventBytes: () => this.countsNow().instance.eventBytes,
    cluster: {
      sessions: () => this.countsNow().cluster.sessions,
      peers: () => this.countsNow().cluster.peers,
      eventBytes: () => this.countsNow().cluster.eventBytes,
    },
  };

  async register(sessionId: string, peerId: string, admit?: Admit, mode?: SessionMode, origin?: RegisterOrigin): Promise<Registration> {
    checkPeerId(peerId);
    // The key of the client's address: what the per-address caps count.
    const from = origin?.address === undefined ? '' : addressKey(origin.address);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const seen = await this.run(SCRIPTS.admission, sessionId, peerId, from);
      const existing = seen.session;
      const sessionMode = modeFor(sessionId, existing?.mode, mode, this.unavailable);
      const current = existing?.record === undefined ? undefined : parsePeer(existing.record);
      const counts = {
        exists: existing !== undefined,
        registered: current !== undefined,
        sessions: seen.sessions,
        peers: existing?.peers ?? 0,
        ownSessions: seen.ownSessions,
        ownPeers: seen.ownPeers,
        holdsIt: current !== undefined && (current.o ?? '') === from,
        hasOrigin: from !== '',
      };
      checkCaps(counts, this.config, sessionId, 'cluster');
      let session: AdmitSession | undefined;
      if (existing) {
        const invite = existing.invite === undefined ? undefined : (JSON.parse(existing.invite) as Invite);
        const invites = existing.inviteOnly ? new Map(invite ? [[peerId, invite]] : []) : undefined;
        session = { peers: { size: existing.peers }, managed: existing.managed ? { invites } : undefined, publisher: existing.publisher };
      }
      const auth = admit?.(session, current && { auth: authOf(current) });
      const relayRefused = relayRegisterRefusal(sessionId, sessionMode, {
        exists: existing !== undefined,
        publisher: existing?.publisher,
        role: auth?.role,
        createsRelay: origin?.createsRelay,
      });
      if (relayRefused) throw relayRefused;
      const reply = await this.run(
        SCRIPTS.register,
        sessionId,
        peerId,
        existing?.fingerprint ?? '',
        JSON.stringify(auth ?? {}),
        String(this.config.peerTimeoutMs),
        String(this.config.maxSessions),
        String(this.config.maxPeersPerSession),
        ...topicArgs(peerNotice(peerId)),
        ...boundsArgs(this.bounds),
        from,
        String(this.config.maxSessionsPerIp),
        String(this.config.maxPeersPerIp),
        storedEvent(serverEvents.newPeer(peerId)),
        sessionMode,
        String(this.config.maxRelayPeersPerIp),
        String(this.config.relayLeaseMs),
        auth?.role ?? 'viewer',
      );
      if (reply.status === 'conflict') continue;
      if (reply.status === 'relay_full') throw clusterRelayFull(sessionId, !existing);
      if (reply.status === 'relay_peers') throw relayPeersRefusal(this.config.maxRelayPeersPerIp);
      if (reply.status === 'cap') throw capRefusal(reply.cap, this.config, sessionId, 'cluster');
      this.apply(reply.out);
      if (reply.created) this.emit({ type: 'session-created', sessionId, by: 'register' });
      this.emit({ type: 'peer-joined', sessionId, peerId, role: auth?.role, takeover: reply.takeover });
      this.observer.peerJoined();
      return { peers: reply.others, auth, lastEventId: reply.lastEventId, mode: sessionMode };
    }
    throw refusals.busySession(sessionId);
  }

  async createSession(sessionId: string, options: SessionOptions): Promise<{ mode: SessionMode }> {
    for (const peerId of options.invites?.keys() ?? []) checkPeerId(peerId);
    const mode = modeFor(sessionId, undefined, options.mode, this.unavailable);
    const invites: string[] = [];
    for (const [peerId, invite] of options.invites ?? []) invites.push(peerId, JSON.stringify(invite));
    const reply = await this.run(
      SCRIPTS.createSession,
      sessionId,
      String(options.idleMs),
      String(this.config.maxSessions),
      options.invites ? '1' : '0',
      mode,
      String(this.config.relayLeaseMs),
      ...invites,
    );
    if (reply.status === 'session_exists') throw refusals.sessionExists(sessionId);
    if (reply.status === 'too_many_sessions') throw refusals.tooManySessions(this.config.maxSessions, 'cluster');
    if (reply.status === 'relay_full') throw clusterRelayFull(sessionId, true);
    // Placed here: the frame that says so.
    this.apply(reply.out);
    this.emit({ type: 'session-created', sessionId, by: 'admin' });
    return { mode };
  }

  /**
   * One step in Redis: the sender is found and, with `guard`, its token checked there (the route's access
   * check costs no round trip of its own), then the message is appended to its targets' logs.
   */
  async send(sessionId: string, peerId: string, body: SignalBody & WithPayloadJson, guard?: SendGuard): Promise<Delivered> {
    // Taken now, given back if the sender is not let in: a refusal of the rate comes after the token's.
    const limited = guard?.rate.take();
    const decided = this.decide(sessionId, peerId, body, limited);
    const [message] = await this.runSend(sessionId, peerId, [body], guard, limited || !guard ? 0 : 1, [decided]);
    const outcome = this.outcome(sessionId, body, message, decided);
    if (outcome === 'sent' || outcome === 'queued') return outcome;
    throw outcome;
  }

  /** A batch in one Redis step: the sender let in once, then each message as `send` takes it. */
  async sendBatch(
    sessionId: string,
    peerId: string,
    bodies: readonly SignalBody[],
    guard?: SendGuard,
    before: readonly (SignalError | undefined)[] = [],
  ): Promise<MessageOutcome[]> {
    let taken = 0;
    const decided = bodies.map((body, i) => {
      const limited = batchItemRefusal(before[i], guard?.rate);
      if (!limited && guard) taken++;
      return this.decide(sessionId, peerId, body, limited);
    });
    const messages = await this.runSend(sessionId, peerId, bodies, guard, taken, decided);
    return bodies.map((body, i) => {
      try {
        return this.outcome(sessionId, body, messages[i], decided[i] as Decided);
      } catch (e) {
        // A refusal is this message's outcome; anything else is a bug, and fails the request.
        if (e instanceof SignalError) return e;
        throw e;
      }
    });
  }

  /**
   * What is decided of one message before the script: the refusal of the rates and the session rules and,
   * for `switchboard`, what its owner reads or why it cannot take it. That is refused by the instance that
   * took the request, since the owner may be elsewhere.
   */
  private decide(sessionId: string, peerId: string, body: SignalBody, limited: SignalError | undefined): Decided {
    const refused = limited ?? messageRefusal(peerId, body);
    const toServer = !refused && body.target === SERVER_PEER_ID ? serverMessage(body, () => this.iceRestarts.take(sessionId, peerId)) : undefined;
    return { refused, toServer };
  }

  /**
   * Runs the send script for `bodies` and answers with what became of each message, or throws the
   * sender's refusal, giving back the `taken` tokens of the sender's rate.
   */
  private async runSend(
    sessionId: string,
    peerId: string,
    bodies: readonly SignalBody[],
    guard: SendGuard | undefined,
    taken: number,
    decided: readonly Decided[],
  ): Promise<(MessageReply | undefined)[]> {
    const giveBack = () => {
      for (let i = 0; i < taken; i++) guard?.rate.giveBack();
    };
    const messages: string[] = [];
    bodies.forEach((body, i) => {
      const { refused, toServer } = decided[i] ?? {};
      messages.push(
        body.target ?? '',
        storedEvent(clientEvent(peerId, body).members),
        refused ? '1' : '0',
        MEDIA_SIGNALS.has(body.type) ? '1' : '0',
        typeof toServer === 'string' ? toServer : '',
      );
    });
    let reply: SenderReply;
    try {
      reply = await this.sends.send(
        [
          sessionId,
          peerId,
          guard?.credential.checked ? '1' : '0',
          guard?.credential.hash ?? '',
          ...topicArgs(fromPeer(peerId)),
          String(this.deps.clock.now()),
          String(bodies.length),
          ...messages,
        ],
        bodies.length,
      );
    } catch (e) {
      giveBack();
      for (const body of bodies) this.observer.message(body.type, 'rejected');
      throw e;
    }
    if (reply.status !== 'ok') {
      giveBack();
      // The refusals of the guard are the route's, as in one process: not counted as rejected messages.
      if (!guard) for (const body of bodies) this.observer.message(body.type, 'rejected');
      if (reply.status === 'session_not_found') throw refusals.sessionNotFound(sessionId);
      if (reply.status === 'peer_not_found') throw refusals.peerNotFound(sessionId, peerId);
      throw guard?.credential.refusal(reply.status) ?? new Error('send: a token was checked without a guard');
    }
    return reply.messages;
  }

  /**
   * What became of one message: 'sent', 'queued', or its refusal. `decided.refused` is the refusal decided
   * before the script (the rates, the session rules): a rate's refusal is not counted as a rejected message.
   */
  private outcome(sessionId: string, body: SignalBody, reply: MessageReply | undefined, decided: Decided): MessageOutcome {
    const { refused, toServer } = decided;
    switch (reply?.status) {
      case 'refused':
        if (refused?.code !== 'rate_limited') this.observer.message(body.type, 'rejected');
        if (!refused) throw new Error('send: refused without a refusal');
        return refused;
      case 'server_refused':
        this.observer.message(body.type, 'rejected');
        if (toServer instanceof SignalError) return toServer;
        throw new Error('send: switchboard refused without a refusal');
      case 'media_to_server':
        this.observer.message(body.type, 'rejected');
        return refusals.mediaToServerOnly(sessionId, body.type, SERVER_PEER_ID);
      case 'server':
        // Sent to the owner of the session's media, through its channel (the frames `apply` wrote).
        return countMessage(this.observer, body.type, () => 'sent' as const);
      default:
        break;
    }
    return countMessage(this.observer, body.type, () => this.delivered(sessionId, body, reply));
  }

  /** What the send script's answer for one message means for the sender: 'sent', 'queued', or a refusal of its targets. */
  private delivered(sessionId: string, body: SignalBody, reply: MessageReply | undefined): Delivered {
    if (reply === undefined) throw new Error('send: the script answered for fewer messages than it was given');
    if (reply.status === 'target_not_found') throw refusals.targetNotFound(sessionId, reply.target);
    if (reply.status === 'queue_full') {
      if (reply.why === 'total') throw refusals.queueTotal(reply.bytes, this.bounds.totalBytes, 'cluster');
      if (body.target === undefined) throw refusals.queueBroadcast(reply.target);
      throw reply.why === 'held' ? refusals.queueHeld(reply.held) : refusals.queueBytes(reply.bytes);
    }
    if (reply.status !== 'ok') throw new Error(`send: unexpected status ${reply.status}`);
    // 'sent' when each target's stream is held by a live instance, which writes it at once: here, when
    // this instance wrote it; elsewhere, when that instance's channel took it. How far the other
    // instance's stream is behind is not known here without a race (its progress is stored after each
    // write); a stream that stops reading is cut at MAX_QUEUE, as in one process.
    let result: Delivered = 'sent';
    for (const { target, id, receivers } of reply.appended) {
      const written = receivers === -1 ? (this.streams.cursorOf(peerAddress(sessionId, target)) ?? 0) >= id : receivers > 0;
      if (!written) result = 'queued';
    }
    return result;
  }

  /** Never at once in a cluster: the instance that carries the session's media may be another, and its offer comes over the stream. */
  serverOffer(): Promise<unknown> {
    return Promise.resolve(undefined);
  }

  async connect(sessionId: string, peerId: string, sink: EventSink, lastEventId?: number): Promise<void> {
    if (this.stopped) {
      sink.close();
      return;
    }
    const key = peerAddress(sessionId, peerId);
    this.streams.expect(key);
    let reply: AttachReply;
    try {
      reply = await this.run(SCRIPTS.attach, sessionId, peerId, lastEventId === undefined ? '' : String(lastEventId), String(this.attachedDeadline()));
    } catch (e) {
      this.streams.abandon(key);
      sink.close();
      throw e;
    }
    if (reply.status !== 'ok') {
      this.streams.abandon(key);
      sink.close();
      const { status } = reply;
      if (status === 'superseded' || status === 'resume_gap') this.observer.resumed(status);
      if (status === 'superseded') throw refusals.superseded();
      if (status === 'resume_gap') throw refusals.resumeGap(lastEventId ?? 0);
      throw status === 'session_not_found' ? refusals.sessionNotFound(sessionId) : refusals.peerNotFound(sessionId, peerId);
    }
    const { out, gen, cursor, events } = reply;
    this.apply(out);
    if (!sink.isOpen) {
      // The client left while the attach ran: its timeout starts now.
      this.streams.abandon(key);
      this.detach(key, gen);
      return;
    }
    this.streams.install({ sessionId, peerId }, key, sink, gen, cursor, events);
    if (lastEventId !== undefined) this.observer.resumed('resumed');
  }

  async leave(sessionId: string, peerId: string): Promise<void> {
    const reply = await this.run(SCRIPTS.leave, sessionId, peerId, ...topicArgs(peerNotice(peerId)), ...boundsArgs(this.bounds), storedEvent(serverEvents.peerLeft(peerId)));
    if (reply.status === 'session_not_found') throw refusals.sessionNotFound(sessionId);
    if (reply.status === 'peer_not_found') throw refusals.peerNotFound(sessionId, peerId);
    this.apply(reply.out);
    this.left(sessionId, peerId, 'left', reply.outcome);
  }

  async closeSession(sessionId: string): Promise<void> {
    const reply = await this.run(SCRIPTS.closeSession, sessionId, storedEvent(serverEvents.sessionClosed));
    if (reply.status === 'session_not_found') throw refusals.sessionNotFound(sessionId);
    this.apply(reply.out);
    this.emit({ type: 'session-closed', sessionId, reason: 'closed' });
  }

  async peerAuth(sessionId: string, peerId: string): Promise<PeerAuth | undefined> {
    const reply = await this.run(SCRIPTS.peerAuth, sessionId, peerId);
    if (reply.status === 'session_not_found') throw refusals.sessionNotFound(sessionId);
    if (reply.status === 'peer_not_found') throw refusals.peerNotFound(sessionId, peerId);
    return parseAuth(reply.record);
  }

  async sessionAuths(sessionId: string): Promise<{ id: string; auth?: PeerAuth }[]> {
    const reply = await this.run(SCRIPTS.sessionAuths, sessionId);
    if (reply.status === 'session_not_found') throw refusals.sessionNotFound(sessionId);
    return reply.records.map(({ id, record }) => ({ id, auth: parseAuth(record) }));
  }

  async snapshot(sessionId: string): Promise<SessionSnapshot | undefined> {
    return (await this.ordered(sessionId))?.snapshot;
  }

  /** A session's snapshot, and its place among the sessions created (which orders those of one millisecond). */
  private async ordered(sessionId: string): Promise<{ snapshot: SessionSnapshot; order: number } | undefined> {
    const reply = await this.run(SCRIPTS.snapshot, sessionId);
    if (reply.status !== 'ok') return undefined;
    const snapshot: SessionSnapshot = { id: sessionId, createdAt: reply.createdAt, mode: reply.mode, managed: reply.managed, peers: [] };
    const places = new Map<string, number>();
    for (const { id, record, streaming } of reply.peers) {
      const stored = parsePeer(record);
      places.set(id, stored.n);
      snapshot.peers.push({ id, role: authOf(stored)?.role ?? null, streaming });
    }
    snapshot.peers.sort((p, q) => (places.get(p.id) ?? 0) - (places.get(q.id) ?? 0));
    if (reply.inviteOnly) snapshot.invites = reply.invites.map(([peerId, invite]) => ({ peerId, role: (JSON.parse(invite) as { role: Role }).role }));
    return { snapshot, order: reply.order };
  }

  async snapshots(): Promise<SessionSnapshot[]> {
    const ids = (await this.link.command('SMEMBERS', [redisKey.sessions(this.config.redisPrefix)])) as string[];
    const all = await Promise.all(ids.map((id) => this.ordered(id)));
    // In the order they were created, as one process lists them.
    return all
      .filter((s) => s !== undefined)
      .sort((p, q) => p.snapshot.createdAt - q.snapshot.createdAt || p.order - q.order)
      .map((s) => s.snapshot);
  }

  shutdown(): void {
    this.stopped = true;
    this.keepalive.stop();
    this.sweeper.stop();
    this.relay?.stop();
    this.deps.relay?.engine.shutdown();
    this.streams.closeAll();
  }

  /**
   * A drain's first step: the relay sessions this instance owns go to other instances, and its media for
   * each ends once the new owner has offered (at most `deadlineMs`); streams stay open meanwhile, so
   * that the new offers reach the peers whose streams are here.
   */
  async handover(deadlineMs: number): Promise<void> {
    await this.relay?.handover(deadlineMs);
  }

  /** Waits for what is still being written to Redis (the detaches of the streams just closed), then disconnects. */
  async close(): Promise<void> {
    this.shutdown();
    await Promise.allSettled([...this.inFlight]);
    this.link.close();
  }

  /**
   * Claims the deadlines that are due, and acts on each one this instance won. Called while a sweep
   * runs, it resolves once a sweep that started after the call has finished: what was due then is done.
   */
  sweep(): Promise<void> {
    if (this.sweeping) {
      this.sweepAgain = true;
      return this.sweeping;
    }
    if (!this.link.isUp) return Promise.resolve();
    this.sweeping = (async () => {
      do {
        this.sweepAgain = false;
        await this.sweepOnce();
      } while (this.sweepAgain && !this.stopped);
    })().finally(() => {
      this.sweeping = undefined;
    });
    return this.sweeping;
  }

  private async sweepOnce(): Promise<void> {
    try {
      const now = this.deps.clock.now();
      const due = (await this.link.command('ZRANGEBYSCORE', [redisKey.deadlines(this.config.redisPrefix), '-inf', String(now), 'LIMIT', '0', String(SWEEP_BATCH)])) as string[];
      for (const member of due) {
        // A peer's member is its address (a session's starts with "/"): its peer-left notice is about that id.
        const peerId = peerIdOf(member);
        const reply = await this.run(SCRIPTS.expire, member, ...topicArgs(peerNotice(peerId)), ...boundsArgs(this.bounds), storedEvent(serverEvents.peerLeft(peerId)));
        if (reply.status === 'idle') {
          this.emit({ type: 'session-closed', sessionId: reply.sessionId, reason: 'idle' });
        } else if (reply.status === 'timeout') {
          const { out, sessionId, peerId, outcome } = reply;
          this.apply(out);
          this.logger.info('peer timed out', { sessionId, peerId, afterMs: this.config.peerTimeoutMs });
          this.left(sessionId, peerId, 'timeout', outcome);
        }
      }
    } catch (e) {
      this.logger.debug('sweep failed', { error: (e as Error).message });
    }
  }

  /** Refreshes the streams this instance holds; the detaches Redis missed are sent again. */
  async refresh(): Promise<void> {
    if (!this.link.isUp) return;
    for (const [key, gen] of [...this.undetached]) {
      this.undetached.delete(key);
      this.detach(key, gen);
    }
    await this.streams.refresh(this.attachedDeadline());
  }

  private reconcile(): void {
    void this.track(this.refresh());
    this.relay?.reconnected();
  }

  /** Relay sessions need the relay engine (RELAY_MODE other than off). */
  private readonly unavailable = (mode: SessionMode): SignalError | undefined => (mode === 'relay' && !this.deps.relay ? refusals.relayOff() : undefined);

  private detach(key: string, gen: number): void {
    const deadline = this.deps.clock.now() + this.config.peerTimeoutMs;
    const done = this.link.eval(SCRIPTS.detach, [...this.args(), key, String(gen), String(deadline)]).catch(() => {
      if (!this.stopped) this.undetached.set(key, gen);
    });
    void this.track(done);
  }

  private left(sessionId: string, peerId: string, reason: 'left' | 'timeout', outcome: Outcome): void {
    this.observer.peerLeft(reason);
    this.emit({ type: 'peer-left', sessionId, peerId, reason });
    if (outcome === 'closed') this.emit({ type: 'session-closed', sessionId, reason: 'empty' });
  }

  /** Messages a script returned for this instance, applied as if they had been published to it. */
  private apply(out: string[]): void {
    for (const message of out) this.streams.handle(message);
  }

  private attachedDeadline(): number {
    return this.deps.clock.now() + this.config.peerTimeoutMs + this.timing.slackMs;
  }

  private args(): string[] {
    return [this.config.redisPrefix, this.deps.instanceId, String(this.deps.clock.now()), String(this.timing.ttlMs)];
  }

  private async run<R>(script: Script<R>, ...args: string[]): Promise<R> {
    return script.decode(await this.link.eval(script, [...this.args(), ...args]));
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight.add(promise);
    void promise.finally(() => this.inFlight.delete(promise));
    return promise;
  }

  private countsNow(): CountsReply {
    const now = this.deps.clock.now();
    if (now - this.counts.at >= GAUGE_REFRESH_MS && this.link.isUp) {
      this.counts.at = now;
      this.run(SCRIPTS.counts)
        .then((counts) => {
          this.counts = { ...counts, at: this.counts.at };
        })
        .catch(() => {});
    }
    return this.counts;
  }

  private emit(event: SessionEvent): void {
    this.deps.listener?.(event);
  }
}

/** What is decided of one message before the send script (see `ClusterSignalling.decide`). */
interface Decided {
  refused: SignalError | undefined;
  /** For `switchboard`: the message as its owner reads it, or why it cannot take it. */
  toServer: string | SignalError | undefined;
}

/**
 * A message to `switchboard` as its owner reads it ({ type, payload }), or the refusal of what it
 * cannot take (checked here, as one process checks it, so that bad input is a 400 and too many
 * ice-restarts a 429 in its own answer).
 */
function serverMessage(body: SignalBody, restart: () => SignalError | undefined): string | SignalError {
  try {
    const message = parseMessage(body.type, body.payload);
    const limited = negotiates(message) ? restart() : undefined;
    if (limited) return limited;
  } catch (e) {
    if (e instanceof SignalError) return e;
    throw e;
  }
  return JSON.stringify({ type: body.type, payload: body.payload });
}
