import { type Clock, Ticker } from '../clock';
import type { Config } from '../config';
import type { Delivered, EventSink } from '../delivery/delivery';
import { type DeliveryObserver, noObserver } from '../delivery/observer';
import { type EventBounds, eventBounds, fromPeer, peerNotice, refusals } from '../delivery/rules';
import { type ErrorCode, SignalError } from '../errors';
import { holdingArgs, holdingRefusals, type HoldingsConfig } from '../limits/address-holdings';
import { addressKey } from '../limits/client-ip';
import { type Logger, silentLogger } from '../log/logger';
import type {
  Admit,
  AdmitSession,
  RegisterOrigin,
  Registration,
  SessionGauges,
  SessionOptions,
  SessionSnapshot,
  SignallingBackend,
} from '../sessions/backend';
import type { SessionEvent, SessionListener } from '../sessions/events';
import { SERVER_EVENT_TYPES, type SignalBody } from '../sessions/model';
import { reservedPeer, SERVER_PEER_ID, type SessionMode } from '../sessions/server-peer';
import type { Invite, PeerAuth, Role } from '../sessions/store';
import { HeldStreams } from './held-streams';
import { RedisLink } from './redis-link';
import { boundsArgs, peerAddress, redisKey, SCRIPTS, topicArgs } from './scripts';

export type ClusterConfig = Pick<Config, 'peerTimeoutMs' | 'maxSessions' | 'maxPeersPerSession' | 'maxQueue' | 'maxPeerEventBytes' | 'maxEventBytes' | 'redisPrefix' | 'redisTimeoutMs'> &
  HoldingsConfig & { redisUrl: string };

export interface ClusterDeps {
  /** The instances' clock: deadlines in Redis are scored with it, so it must agree across instances (NTP). */
  clock: Clock;
  /** This instance's id: the name of its channel and of the streams it holds. */
  instanceId: string;
  listener?: SessionListener;
  observer?: DeliveryObserver;
  logger?: Logger;
  /** Real time for the Redis reconnection backoff. */
  timers?: Pick<Clock, 'schedule'>;
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

const SESSION_CLOSED = JSON.stringify({ type: 'session-closed' });
/** Deadlines claimed per sweep. */
const SWEEP_BATCH = 100;
/** Registrations retried when the session changed between the admission check and the write. */
const MAX_ATTEMPTS = 20;
/** How often the cluster-wide gauges are read again, at most. */
const GAUGE_REFRESH_MS = 5000;

type Reply = [string, ...unknown[]];

/**
 * A registration as kept in the session's peers hash: its credentials, and `n`, its place in the
 * session (kept on takeover), so that the admin API lists peers in the order they joined, as one
 * process does.
 */
interface StoredPeer {
  tokenHash?: string;
  role?: Role;
  n: number;
}

const parsePeer = (json: unknown): StoredPeer => JSON.parse(json as string) as StoredPeer;

const parseAuth = (json: unknown): PeerAuth | undefined => {
  if (typeof json !== 'string') return undefined;
  const { tokenHash, role } = parsePeer(json);
  return tokenHash === undefined || role === undefined ? undefined : { tokenHash, role };
};

/**
 * The signalling semantics of `Signalling`, for several instances that share one Redis (see
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
  private counts = { sessions: 0, peers: 0, eventBytes: 0, at: -Infinity };
  private readonly bounds: EventBounds;

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
      scripts: Object.values(SCRIPTS),
      channel: redisKey.channel(config.redisPrefix, deps.instanceId),
      onMessage: (message) => this.streams.handle(message),
      onReconnect: () => this.reconcile(),
      logger: this.logger.child({ component: 'redis' }),
      timers: deps.timers,
      commandTimeoutMs: config.redisTimeoutMs,
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
    });
    this.keepalive = new Ticker(deps.clock, this.timing.keepaliveMs, () => void this.track(this.refresh()));
    this.sweeper = new Ticker(deps.clock, this.timing.sweepMs, () => void this.track(this.sweep()));
  }

  /** Connects to Redis (retrying in the background when it cannot) and starts the timers. */
  async start(): Promise<void> {
    this.keepalive.start();
    this.sweeper.start();
    await this.link.start();
  }

  /** The streams held by this instance. */
  get heldStreams(): number {
    return this.streams.size;
  }

  readonly gauges: SessionGauges = {
    sessions: () => this.countsNow().sessions,
    peers: () => this.countsNow().peers,
    eventBytes: () => this.countsNow().eventBytes,
  };

  async register(sessionId: string, peerId: string, admit?: Admit, mode?: SessionMode, origin?: RegisterOrigin): Promise<Registration> {
    if (peerId === SERVER_PEER_ID) throw reservedPeer();
    if (mode === 'relay') throw relayUnavailable();
    // The key of the client's address: what the per-address caps count.
    const from = origin?.address === undefined ? '' : addressKey(origin.address);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const seen = (await this.run(SCRIPTS.admission, sessionId, peerId)) as unknown[];
      const exists = seen[0] === 1;
      const sessionCount = seen[1] as number;
      if (!exists && sessionCount >= this.config.maxSessions) throw this.tooManySessions();
      const peerCount = exists ? (seen[3] as number) : 0;
      const current = exists && seen[6] !== null ? { auth: parseAuth(seen[6]) } : undefined;
      if (exists && !current && peerCount >= this.config.maxPeersPerSession) throw this.sessionFull(sessionId);
      let session: AdmitSession | undefined;
      if (exists) {
        const invite = seen[7] === null ? undefined : (JSON.parse(seen[7] as string) as Invite);
        const invites = seen[5] === 1 ? new Map(invite ? [[peerId, invite]] : []) : undefined;
        const publisher = seen[8] === '' ? undefined : (seen[8] as string);
        session = { peers: { size: peerCount }, managed: seen[4] === 1 ? { invites } : undefined, publisher };
      }
      const auth = admit?.(session, current);
      const reply = (await this.run(
        SCRIPTS.register,
        sessionId,
        peerId,
        seen[2] as string,
        JSON.stringify(auth ?? {}),
        String(this.config.peerTimeoutMs),
        String(this.config.maxSessions),
        String(this.config.maxPeersPerSession),
        ...topicArgs(peerNotice(peerId)),
        ...boundsArgs(this.bounds),
        from,
        ...holdingArgs(this.config),
      )) as Reply;
      const status = reply[0];
      if (status === 'conflict') continue;
      if (status === 'too_many_own_sessions') throw holdingRefusals.sessions(this.config.maxSessionsPerIp);
      if (status === 'too_many_peers') throw holdingRefusals.peers(this.config.maxPeersPerIp);
      if (status === 'too_many_sessions') throw this.tooManySessions();
      if (status === 'session_full') throw this.sessionFull(sessionId);
      const [, out, created, takeover, lastEventId, others] = reply as [string, string[], number, number, number, string[]];
      this.apply(out);
      if (created === 1) this.emit({ type: 'session-created', sessionId, by: 'register' });
      this.emit({ type: 'peer-joined', sessionId, peerId, role: auth?.role, takeover: takeover === 1 });
      this.observer.peerJoined();
      return { peers: others, auth, lastEventId, mode: 'mesh' };
    }
    throw new SignalError('backend_unavailable', `session ${sessionId} changes too fast to join; retry`, 1);
  }

  async createSession(sessionId: string, options: SessionOptions): Promise<{ mode: SessionMode }> {
    if (options.mode === 'relay') throw relayUnavailable();
    if (options.invites?.has(SERVER_PEER_ID)) throw reservedPeer();
    const invites: string[] = [];
    for (const [peerId, invite] of options.invites ?? []) invites.push(peerId, JSON.stringify(invite));
    const reply = (await this.run(
      SCRIPTS.createSession,
      sessionId,
      String(options.idleMs),
      String(this.config.maxSessions),
      options.invites ? '1' : '0',
      ...invites,
    )) as Reply;
    if (reply[0] === 'session_exists') throw new SignalError('session_exists', `session ${sessionId} already exists`);
    if (reply[0] === 'too_many_sessions') throw this.tooManySessions();
    this.emit({ type: 'session-created', sessionId, by: 'admin' });
    return { mode: 'mesh' };
  }

  async send(sessionId: string, peerId: string, body: SignalBody): Promise<Delivered> {
    let result: Delivered;
    try {
      result = await this.relay(sessionId, peerId, body);
    } catch (e) {
      this.observer.message(body.type, 'rejected');
      throw e;
    }
    this.observer.message(body.type, result === 'sent' ? 'relayed' : 'queued');
    return result;
  }

  private async relay(sessionId: string, peerId: string, body: SignalBody): Promise<Delivered> {
    if (SERVER_EVENT_TYPES.has(body.type)) {
      throw new SignalError('reserved_type', `type "${body.type}" is sent by the server only`);
    }
    if (body.target === peerId) throw new SignalError('invalid_request', 'target is the sender itself');
    const json = JSON.stringify({ type: body.type, payload: body.payload, senderId: peerId });
    const reply = (await this.run(
      SCRIPTS.send,
      sessionId,
      peerId,
      body.target ?? '',
      json,
      String(this.deps.clock.now()),
      ...topicArgs(fromPeer(peerId)),
      ...boundsArgs(this.bounds),
    )) as Reply;
    const status = reply[0];
    if (status === 'queue_full') {
      const [, other, held, out, why, bytes] = reply as [string, string, number, string[], 'held' | 'bytes' | 'total', number];
      this.apply(out);
      if (why === 'total') throw refusals.total(bytes, this.bounds.totalBytes, 'cluster');
      if (body.target === undefined) throw refusals.broadcast(other);
      throw why === 'held' ? refusals.held(held) : refusals.bytes(bytes);
    }
    if (status !== 'ok') throw this.refusal(status, sessionId, peerId, reply[1] as string | undefined);
    this.apply(reply[1] as string[]);
    // 'sent' when each target's stream is held by a live instance, which writes it at once: here, when
    // this instance wrote it; elsewhere, when that instance's channel took it. How far the other
    // instance's stream is behind is not known here without a race (its progress is stored after each
    // write); a stream that stops reading is cut at MAX_QUEUE, as in one process.
    let result: Delivered = 'sent';
    for (let i = 2; i + 3 < reply.length; i += 4) {
      const target = reply[i] as string;
      const id = reply[i + 1] as number;
      const receivers = reply[i + 3] as number;
      const written = receivers === -1 ? (this.streams.cursorOf(peerAddress(sessionId, target)) ?? 0) >= id : receivers > 0;
      if (!written) result = 'queued';
    }
    return result;
  }

  async connect(sessionId: string, peerId: string, sink: EventSink, lastEventId?: number): Promise<void> {
    if (this.stopped) {
      sink.close();
      return;
    }
    const key = peerAddress(sessionId, peerId);
    this.streams.expect(key);
    let reply: Reply;
    try {
      reply = (await this.run(SCRIPTS.attach, sessionId, peerId, lastEventId === undefined ? '' : String(lastEventId), String(this.attachedDeadline()))) as Reply;
    } catch (e) {
      this.streams.abandon(key);
      sink.close();
      throw e;
    }
    const status = reply[0];
    if (status !== 'ok') {
      this.streams.abandon(key);
      sink.close();
      if (status === 'superseded' || status === 'resume_gap') this.observer.resumed(status);
      if (status === 'superseded') throw new SignalError('superseded', 'this peer id registered again since that stream; register to join anew');
      if (status === 'resume_gap') throw new SignalError('resume_gap', `cannot resume after event ${lastEventId}: it is no longer kept; register again`);
      throw this.refusal(status, sessionId, peerId);
    }
    const [, out, gen, cursor, events] = reply as [string, string[], number, number, unknown[]];
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
    const reply = (await this.run(SCRIPTS.leave, sessionId, peerId, ...topicArgs(peerNotice(peerId)), ...boundsArgs(this.bounds))) as Reply;
    if (reply[0] !== 'ok') throw this.refusal(reply[0], sessionId, peerId);
    this.apply(reply[1] as string[]);
    this.left(sessionId, peerId, 'left', reply[2] as string);
  }

  async closeSession(sessionId: string): Promise<void> {
    const reply = (await this.run(SCRIPTS.closeSession, sessionId, SESSION_CLOSED)) as Reply;
    if (reply[0] !== 'ok') throw this.refusal(reply[0], sessionId);
    this.apply(reply[1] as string[]);
    this.emit({ type: 'session-closed', sessionId, reason: 'closed' });
  }

  async peerAuth(sessionId: string, peerId: string): Promise<PeerAuth | undefined> {
    const reply = (await this.run(SCRIPTS.peerAuth, sessionId, peerId)) as Reply;
    if (reply[0] !== 'ok') throw this.refusal(reply[0], sessionId, peerId);
    return parseAuth(reply[1]);
  }

  async sessionAuths(sessionId: string): Promise<{ id: string; auth?: PeerAuth }[]> {
    const reply = (await this.run(SCRIPTS.sessionAuths, sessionId)) as Reply;
    if (reply[0] !== 'ok') throw this.refusal(reply[0], sessionId);
    const all = reply[1] as string[];
    const peers: { id: string; auth?: PeerAuth }[] = [];
    for (let i = 0; i < all.length; i += 2) peers.push({ id: all[i] as string, auth: parseAuth(all[i + 1]) });
    return peers;
  }

  async snapshot(sessionId: string): Promise<SessionSnapshot | undefined> {
    return (await this.ordered(sessionId))?.snapshot;
  }

  /** A session's snapshot, and its place among the sessions created (which orders those of one millisecond). */
  private async ordered(sessionId: string): Promise<{ snapshot: SessionSnapshot; order: number } | undefined> {
    const reply = (await this.run(SCRIPTS.snapshot, sessionId)) as Reply;
    if (reply[0] !== 'ok') return undefined;
    const [, createdAt, idleMs, inv, peers, invites, order] = reply as [string, string, string | null, string | null, unknown[], string[], string | null];
    const snapshot: SessionSnapshot = { id: sessionId, createdAt: Number(createdAt), mode: 'mesh', managed: idleMs !== null, peers: [] };
    const places = new Map<string, number>();
    for (let i = 0; i < peers.length; i += 3) {
      const id = peers[i] as string;
      places.set(id, parsePeer(peers[i + 1]).n);
      snapshot.peers.push({ id, role: parseAuth(peers[i + 1])?.role ?? null, streaming: peers[i + 2] === 1 });
    }
    snapshot.peers.sort((p, q) => (places.get(p.id) ?? 0) - (places.get(q.id) ?? 0));
    if (inv !== null) {
      snapshot.invites = [];
      for (let i = 0; i < invites.length; i += 2) {
        snapshot.invites.push({ peerId: invites[i] as string, role: (JSON.parse(invites[i + 1] as string) as { role: Role }).role });
      }
    }
    return { snapshot, order: Number(order ?? 0) };
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
    this.streams.closeAll();
  }

  /** Waits for what is still being written to Redis (the detaches of the streams just closed), then disconnects. */
  async close(): Promise<void> {
    this.shutdown();
    await Promise.allSettled([...this.inFlight]);
    this.link.close();
  }

  /**
   * Stops at once, as a crashed instance would: no detach, nothing written; what it held is left to
   * its deadlines. For tests of an instance that dies.
   */
  crash(): void {
    this.stopped = true;
    this.keepalive.stop();
    this.sweeper.stop();
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
        // A peer's member is "<sessionId>/<peerId>" (a session's starts with "/"): its peer-left notice is about that id.
        const notice = peerNotice(member.slice(member.indexOf('/') + 1));
        const reply = (await this.link.eval(SCRIPTS.expire, [...this.args(), member, ...topicArgs(notice), ...boundsArgs(this.bounds)])) as Reply;
        if (reply[0] === 'idle') {
          this.emit({ type: 'session-closed', sessionId: reply[2] as string, reason: 'idle' });
        } else if (reply[0] === 'timeout') {
          const [, out, sessionId, peerId, outcome] = reply as [string, string[], string, string, string];
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
  }

  private detach(key: string, gen: number): void {
    const deadline = this.deps.clock.now() + this.config.peerTimeoutMs;
    const done = this.link.eval(SCRIPTS.detach, [...this.args(), key, String(gen), String(deadline)]).catch(() => {
      if (!this.stopped) this.undetached.set(key, gen);
    });
    void this.track(done);
  }

  private left(sessionId: string, peerId: string, reason: 'left' | 'timeout', outcome: string): void {
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

  private run(script: (typeof SCRIPTS)[keyof typeof SCRIPTS], ...args: string[]): Promise<unknown> {
    return this.link.eval(script, [...this.args(), ...args]);
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight.add(promise);
    void promise.finally(() => this.inFlight.delete(promise));
    return promise;
  }

  private countsNow(): { sessions: number; peers: number; eventBytes: number } {
    const now = this.deps.clock.now();
    if (now - this.counts.at >= GAUGE_REFRESH_MS && this.link.isUp) {
      this.counts.at = now;
      this.link
        .eval(SCRIPTS.counts, this.args())
        .then((reply) => {
          const [sessions, peers, eventBytes] = reply as [number, number, number];
          this.counts.sessions = sessions;
          this.counts.peers = peers;
          this.counts.eventBytes = eventBytes;
        })
        .catch(() => {});
    }
    return this.counts;
  }

  private emit(event: SessionEvent): void {
    this.deps.listener?.(event);
  }

  private refusal(status: string, sessionId: string, peerId?: string, target?: string): SignalError {
    switch (status as ErrorCode) {
      case 'session_not_found':
        return new SignalError('session_not_found', `session ${sessionId} does not exist`);
      case 'peer_not_found':
        return new SignalError('peer_not_found', `peer ${peerId} is not registered in session ${sessionId}`);
      case 'target_not_found':
        return new SignalError('target_not_found', `peer ${target} is not in session ${sessionId}`);
      default:
        throw new Error(`unexpected answer from Redis: ${status}`);
    }
  }

  private tooManySessions(): SignalError {
    return new SignalError('too_many_sessions', `this cluster holds its limit of ${this.config.maxSessions} sessions`, 5);
  }

  private sessionFull(sessionId: string): SignalError {
    return new SignalError('session_full', `session ${sessionId} already has ${this.config.maxPeersPerSession} peers`);
  }
}

/** Media goes through the server in a relay session: its connections live in one process, so a cluster has none. */
function relayUnavailable(): SignalError {
  return new SignalError('invalid_request', 'relay sessions need a single instance: this server keeps its sessions in Redis (REDIS_URL), so only mesh sessions are open');
}
