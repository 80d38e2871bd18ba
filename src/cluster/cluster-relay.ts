// The relay in a cluster: which instance carries each relay session's media, and how that moves. The
// media itself is the one process's (the relay engine, src/relay): this adds only what Redis needs, a
// lease per session with a fencing token, each instance's load for placement, and the frames that tell
// the owner what the signalling did on any instance.
import { type Cancel, type Clock, Ticker } from '../clock';
import { type EventBounds, serverSignal } from '../delivery/rules';
import { type Logger, silentLogger } from '../log/logger';
import { type Collector, type Exposition, Histogram } from '../metrics/exposition';
import { PHASE_BOUNDS_MS } from '../metrics/relay-metrics';
import type { RelayStats } from '../relay/engine';
import { serverPeerEvent } from '../sessions/rules';
import type { ServerPeer } from '../sessions/server-peer';
import { decodeOwnState, type OwnState, type RelayFrame, redisKey, storedEvent } from './protocol';
import { MAX_BACKOFF_MS, type RedisLink } from './redis-link';
import { boundsArgs, SCRIPTS, type Script, topicArgs } from './scripts';

/** The relay engine as the cluster drives it: `LazyRelay`, whose outbox is `ClusterRelay.outbox`. */
export type RelayEngineLike = ServerPeer & {
  stats(): RelayStats;
  /** Loads the engine now (`LazyRelay.prewarm`). */
  prewarm(): Promise<void>;
};

export interface ClusterRelayConfig {
  /** RELAY_LEASE_MS. */
  relayLeaseMs: number;
  /** Relay peers this instance carries (RELAY_CAPACITY, or the process's relay limit). */
  capacity: number;
  redisPrefix: string;
}

export interface ClusterRelayDeps {
  engine: RelayEngineLike;
  /** The instances' clock: leases are scored with it. */
  clock: Clock;
  /** Real time for the handover's wait on the new owners. */
  timers: Pick<Clock, 'schedule'>;
  logger?: Logger;
  link: RedisLink;
  run<R>(script: Script<R>, ...args: string[]): Promise<R>;
  /** Frames a script returned for this instance. */
  apply(out: string[]): void;
  bounds: EventBounds;
  /** Keeps a promise until it settles: the backend's close waits for it. */
  track<T>(promise: Promise<T>): Promise<T>;
}

/** Leases claimed per sweep. */
const SWEEP_BATCH = 100;
/** How often a handover looks whether the new owners have sent their offers. */
const READY_POLL_MS = 25;

/** An adopted session's offers not yet sent: once they are, the new owner says it is ready. */
interface Adopting {
  readonly token: number;
  readonly peers: Set<string>;
  readonly cancel: Cancel;
}

/**
 * This instance's part of the cluster's relay: the sessions whose media it carries (by lease, with the
 * token that fences it), the renewal of those leases with its load, the sweep that takes over the
 * sessions of an instance that died, and the handover of its own when it drains.
 */
export class ClusterRelay implements Collector {
  /** Session id → the token of the lease this instance holds. */
  private readonly owned = new Map<string, number>();
  private readonly adopting = new Map<string, Adopting>();
  private readonly renewer: Ticker;
  private readonly sweeper: Ticker;
  private readonly logger: Logger;
  private draining = false;
  private stopped = false;
  /** After Redis came back, owners get one lease time to renew before anyone takes their sessions. */
  private sweepAfter = -Infinity;
  private sweeping: Promise<void> | undefined;
  /** When the previous sweep looked (the instances' clock): only a lease that had expired by then is claimed. */
  private looked = -Infinity;
  private rate = { at: -Infinity, packets: 0, bytes: 0, pps: 0, bps: 0 };
  private readonly counters = { placed: 0, failover: 0, handover: 0, renewal: 0, handedOver: 0, fenced: 0 };
  private readonly handoverTimes = new Histogram(PHASE_BOUNDS_MS, 1000);

  constructor(
    private readonly config: ClusterRelayConfig,
    private readonly deps: ClusterRelayDeps,
  ) {
    this.logger = deps.logger ?? silentLogger;
    this.renewer = new Ticker(deps.clock, Math.max(50, Math.floor(config.relayLeaseMs / 4)), () => void this.renew());
    // Twice as often as the renewal: a lease is claimed at the second sweep after it ran out (see sweep).
    this.sweeper = new Ticker(deps.clock, Math.max(25, Math.floor(config.relayLeaseMs / 8)), () => void this.sweep());
  }

  start(): void {
    this.renewer.start();
    this.sweeper.start();
  }

  /** The relay sessions this instance carries, with their tokens. */
  get sessions(): ReadonlyMap<string, number> {
    return this.owned;
  }

  /**
   * Redis is back: renew at once, and let the other owners do the same before sweeping: each reconnects
   * after its own backoff, at most MAX_BACKOFF_MS after this one, then renews within a lease time.
   */
  reconnected(): void {
    this.sweepAfter = this.deps.clock.now() + MAX_BACKOFF_MS + this.config.relayLeaseMs;
    void this.renew();
  }

  /**
   * What `switchboard` sends a peer: written to its mailbox if this instance's lease still holds
   * (serverSend checks the token in Redis, in order with the other events of the session). A stale
   * lease fences the session here.
   */
  readonly outbox = (sessionId: string, peerId: string, type: string, payload: unknown): boolean => {
    const token = this.owned.get(sessionId);
    if (token === undefined) return false;
    const sent = this.deps
      .run(SCRIPTS.serverSend, sessionId, peerId, String(token), storedEvent(serverPeerEvent(type, payload)), ...topicArgs(serverSignal(type)), ...boundsArgs(this.deps.bounds))
      .then((reply) => {
        if (reply.status === 'fenced') this.fence(sessionId, token, 'its lease is another instance’s now');
        else if (reply.status === 'ok') this.deps.apply(reply.out);
      })
      .catch((error: unknown) => this.logger.debug('an event from switchboard was not written', { sessionId, peerId, type, error: (error as Error).message }));
    void this.deps.track(sent);
    // After the offer's own script: a handover waiting for `ready` sees the offer in the mailbox first.
    if (type === 'offer') this.offered(sessionId, peerId);
    return true;
  };

  /** A frame for the owner of a relay session's media. */
  frame(frame: RelayFrame): void {
    if (this.stopped) return;
    const { sessionId, peerId, token } = frame;
    if (frame.op === 'own') {
      const state = decodeOwnState(frame.json);
      if (!state) return this.logger.warn('ignored an own frame of an unknown shape', { sessionId });
      return this.adopt(sessionId, token, state);
    }
    // A frame of a lease this instance does not hold (an older one, or one already fenced) is stale.
    if (this.owned.get(sessionId) !== token) return;
    const { engine } = this.deps;
    try {
      switch (frame.op) {
        case 'joined':
          engine.joined(sessionId, peerId, frame.json === 'publisher' ? 'publisher' : 'viewer');
          break;
        case 'reachable':
          engine.reachable(sessionId, peerId);
          break;
        case 'left':
          engine.left(sessionId, peerId);
          break;
        case 'closed':
          this.release(sessionId);
          break;
        case 'message': {
          const { type, payload } = JSON.parse(frame.json) as { type: string; payload: unknown };
          engine.receive(sessionId, peerId, type, payload);
          break;
        }
      }
    } catch (error) {
      // The instance that took the request checked the message; what is refused here (the ICE restart
      // rate) has no request to answer: it is logged.
      this.logger.info('a message to switchboard was not taken', { sessionId, peerId, op: frame.op, error: (error as Error).message });
    }
  }

  /**
   * Takes the media of a session over: a fresh connection with every peer, offered at once to those
   * whose stream is held (the others when theirs opens), as after a registration.
   */
  private adopt(sessionId: string, token: number, state: OwnState): void {
    const held = this.owned.get(sessionId);
    if (held !== undefined && held >= token) return;
    if (held !== undefined) this.release(sessionId);
    this.owned.set(sessionId, token);
    this.counters[state.why]++;
    // The one line that says where a session's media is: operators (and tests) find the owner by it.
    this.logger.info('relay session owned here', { sessionId, lease: token, why: state.why, peers: state.peers.length });
    const { engine } = this.deps;
    const offering = new Set<string>();
    for (const peer of state.peers) engine.joined(sessionId, peer.id, peer.role);
    for (const peer of state.peers) {
      if (!peer.streaming) continue;
      offering.add(peer.id);
      engine.reachable(sessionId, peer.id);
    }
    if (offering.size === 0) return this.ready(sessionId, token);
    // An offer that never comes (the engine failed) does not hold a handover past a lease time.
    const cancel = this.deps.clock.schedule(this.config.relayLeaseMs, () => this.ready(sessionId, token));
    this.adopting.set(sessionId, { token, peers: offering, cancel });
  }

  private offered(sessionId: string, peerId: string): void {
    const adopting = this.adopting.get(sessionId);
    if (!adopting?.peers.delete(peerId) || adopting.peers.size > 0) return;
    this.ready(sessionId, adopting.token);
  }

  /** The offers of an adopted session are in its peers' mailboxes: a draining owner may close its own. */
  private ready(sessionId: string, token: number): void {
    const adopting = this.adopting.get(sessionId);
    if (adopting?.token === token) {
      adopting.cancel();
      this.adopting.delete(sessionId);
    }
    void this.deps.track(this.deps.run(SCRIPTS.markReady, sessionId, String(token)).catch(() => false));
  }

  /** This instance's media for the session ends (closed, fenced or handed over). */
  private release(sessionId: string): void {
    this.owned.delete(sessionId);
    const adopting = this.adopting.get(sessionId);
    adopting?.cancel();
    this.adopting.delete(sessionId);
    this.deps.engine.closed(sessionId);
  }

  /** Another instance holds the lease: this one stops forwarding the session's media, and says so. */
  private fence(sessionId: string, token: number, why: string): void {
    if (this.owned.get(sessionId) !== token) return;
    this.release(sessionId);
    this.counters.fenced++;
    this.logger.warn('relay session fenced: media for it stopped here', { sessionId, lease: token, why });
  }

  /**
   * Renews this instance's leases and publishes its load; adopts what it owns without knowing, fences what
   * it lost. Each call sends its own renewal, even while an earlier one waits: a renewal held up (a slow
   * Redis, a busy connection) must not hold back the next, which carries a later time, ahead of another
   * instance's sweep.
   */
  renew(): Promise<void> {
    if (!this.deps.link.isUp || this.stopped) return Promise.resolve();
    return this.deps.track(this.renewOnce());
  }

  private async renewOnce(): Promise<void> {
    const { pps, bps } = this.measure();
    // What this instance held when it asked: a session adopted since (its frame may come before this
    // answer, on the other connection) is not this answer's to fence.
    const asked = new Map(this.owned);
    let owned: Map<string, number>;
    try {
      owned = await this.deps.run(
        SCRIPTS.renewLeases,
        String(this.config.relayLeaseMs),
        String(this.draining ? 0 : this.config.capacity),
        String(Math.round(pps)),
        String(Math.round(bps)),
        this.draining ? '1' : '0',
      );
    } catch (error) {
      // Nobody can take a session over while Redis is away: the media goes on.
      this.logger.debug('relay leases not renewed', { error: (error as Error).message });
      return;
    }
    for (const [sessionId, token] of asked) {
      if (owned.get(sessionId) !== token) this.fence(sessionId, token, 'the renewal found its lease gone or another’s');
    }
    for (const [sessionId, token] of owned) {
      if (this.owned.has(sessionId)) continue;
      // Placed here, and the frame that said so was lost (Redis reconnected in between).
      const reply = await this.deps.run(SCRIPTS.relayState, sessionId, String(token)).catch(() => undefined);
      const state = reply?.status === 'ok' ? decodeOwnState(reply.json) : undefined;
      if (state && !this.stopped) this.adopt(sessionId, token, state);
    }
  }

  /**
   * Claims the leases that expired; the freest live instance other than the dead owner gets each.
   *
   * A lease is claimed only if it had already expired when the previous sweep looked, not merely now: a
   * process that stood still (a long pause of its own, or a machine that starved every process at once)
   * wakes with its clock gone on, and would otherwise take the session of an owner that stood still as
   * long, and whose renewal is on its way, since it was due in the same instant. Measured on two cores
   * shared with Chromium: stalls of 1 to 3 s in every process at once. Sweeping every eighth of a lease,
   * a dead owner's session is claimed at most a quarter of a lease after its lease ran out, as before.
   */
  sweep(): Promise<void> {
    if (this.sweeping || !this.deps.link.isUp || this.stopped || this.draining) return this.sweeping ?? Promise.resolve();
    this.sweeping = this.sweepOnce().finally(() => {
      this.sweeping = undefined;
    });
    return this.deps.track(this.sweeping);
  }

  private async sweepOnce(): Promise<void> {
    const now = this.deps.clock.now();
    const by = this.looked;
    this.looked = now;
    if (now < this.sweepAfter || by === -Infinity) return;
    try {
      const due = (await this.deps.link.command('ZRANGEBYSCORE', [redisKey.leases(this.config.redisPrefix), '-inf', String(by), 'LIMIT', '0', String(SWEEP_BATCH)])) as string[];
      for (const sessionId of due) {
        const reply = await this.deps.run(SCRIPTS.takeover, sessionId, String(this.config.relayLeaseMs), String(by));
        if (reply.status === 'ok') this.deps.apply(reply.out);
        else if (reply.status === 'full') this.logger.warn('a relay session lost its owner and no instance has room for it', { sessionId });
      }
    } catch (error) {
      this.logger.debug('relay lease sweep failed', { error: (error as Error).message });
    }
  }

  /**
   * Drains: this instance takes no new session, each of its own goes to the freest other instance,
   * and its media ends once the new owner's offers are out (or at `deadlineMs` from now, real time).
   */
  async handover(deadlineMs: number): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.sweeper.stop();
    if (!this.deps.link.isUp) return;
    // Published first: no placement picks this instance from now on.
    await this.renew();
    const started = this.deps.clock.now();
    const moving = new Map<string, number>();
    for (const [sessionId, token] of [...this.owned]) {
      try {
        const reply = await this.deps.run(SCRIPTS.handover, sessionId, String(this.config.relayLeaseMs));
        if (reply.status === 'ok') {
          this.deps.apply(reply.out);
          moving.set(sessionId, reply.token);
        } else if (reply.status === 'full') {
          this.logger.warn('relay session not handed over: no other instance has room', { sessionId, lease: token });
        }
      } catch (error) {
        this.logger.warn('relay session not handed over', { sessionId, error: (error as Error).message });
      }
    }
    let waited = 0;
    while (moving.size > 0 && waited < deadlineMs) {
      for (const [sessionId, token] of [...moving]) {
        const ready = await this.deps.run(SCRIPTS.leaseReady, sessionId, String(token)).catch(() => true);
        if (!ready) continue;
        moving.delete(sessionId);
        this.handoverTimes.observe(this.deps.clock.now() - started);
        this.counters.handedOver++;
        // The new owner's offers are out: this instance's connections close now.
        if (this.owned.has(sessionId)) this.release(sessionId);
      }
      if (moving.size === 0) break;
      await new Promise<void>((resolve) => this.deps.timers.schedule(READY_POLL_MS, resolve));
      waited += READY_POLL_MS;
    }
    for (const sessionId of moving.keys()) this.logger.warn('relay session handed over without its new owner ready in time', { sessionId });
    for (const sessionId of [...this.owned.keys()]) this.release(sessionId);
    this.logger.info('relay sessions handed over', { sessions: this.counters.handedOver });
  }

  stop(): void {
    this.stopped = true;
    this.renewer.stop();
    this.sweeper.stop();
    for (const { cancel } of this.adopting.values()) cancel();
    this.adopting.clear();
    this.owned.clear();
  }

  /** Packets and bytes forwarded per second since the last renewal. */
  private measure(): { pps: number; bps: number } {
    const now = this.deps.clock.now();
    const stats = this.deps.engine.stats();
    const seconds = (now - this.rate.at) / 1000;
    if (Number.isFinite(seconds) && seconds > 0) {
      this.rate.pps = Math.max(0, (stats.packetsOut - this.rate.packets) / seconds);
      this.rate.bps = Math.max(0, (stats.bytesOut - this.rate.bytes) / seconds);
    }
    this.rate = { ...this.rate, at: now, packets: stats.packetsOut, bytes: stats.bytesOut };
    return this.rate;
  }

  collect(out: Exposition): void {
    const c = this.counters;
    out.single('switchboard_relay_owned_sessions', 'gauge', 'Relay sessions whose media this instance carries (it holds their lease).', this.owned.size);
    out.single('switchboard_relay_capacity', 'gauge', 'Relay peers this instance takes in the sessions it owns (RELAY_CAPACITY).', this.draining ? 0 : this.config.capacity);
    out.family(
      'switchboard_relay_placements_total',
      'counter',
      'Relay sessions this instance came to own, by why: placed there when new, taken over after their owner died (failover), handed over by a draining one, found at a renewal.',
    );
    for (const why of ['placed', 'failover', 'handover', 'renewal'] as const) out.sample('switchboard_relay_placements_total', c[why], { why });
    out.single('switchboard_relay_failovers_total', 'counter', 'Relay sessions this instance took over after their owner stopped renewing its lease.', c.failover);
    out.single('switchboard_relay_handovers_total', 'counter', 'Relay sessions this instance handed to another while draining.', c.handedOver);
    out.single('switchboard_relay_fenced_total', 'counter', 'Relay sessions whose media this instance stopped because another instance holds their lease now.', c.fenced);
    out.family('switchboard_relay_handover_seconds', 'histogram', "Time from a draining instance's handover of a relay session to its new owner's offers being sent.");
    out.histogram('switchboard_relay_handover_seconds', this.handoverTimes);
  }
}
