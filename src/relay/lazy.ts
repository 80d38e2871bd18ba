// The `switchboard` peer as the app holds it: the relay engine, loaded when the first relay session
// starts. The engine brings werift (WebRTC in JavaScript), which costs a process about 30 MB and a few
// hundred milliseconds to load: a server without relay sessions never pays for it, and its start is
// that much quicker.
import type { Clock } from '../clock';
import { SignalError } from '../errors';
import { TokenBuckets } from '../limits/token-buckets';
import type { ServerPeer } from '../sessions/server-peer';
import type { Role } from '../sessions/store';
import type { IceParameters } from './answering';
import type { RelayDeps, RelayEngine, RelayStats } from './engine';
import { MAX_REMOTE_CANDIDATES, negotiates, parseMessage } from './messages';
import type { RelayConfig } from './settings';

/** ice-restart messages a peer may send at once, before RELAY_ICE_RESTARTS_PER_MIN applies. */
export const ICE_RESTART_BURST = 3;

/**
 * RELAY_ICE_RESTARTS_PER_MIN, per peer: each restart costs a new offer, new candidates and an ICE agent
 * gathering again. Checked where the message is taken (in a cluster, the instance that took the POST).
 */
export class IceRestartLimit {
  private readonly buckets: TokenBuckets | undefined;

  constructor(clock: Clock, perMin: number) {
    this.buckets = perMin > 0 ? new TokenBuckets(clock, perMin / 60, ICE_RESTART_BURST) : undefined;
  }

  /** The refusal (429) of one more ice-restart from the peer, or undefined when it may send it. */
  take(sessionId: string, peerId: string): SignalError | undefined {
    const wait = this.buckets?.take(peerKey(sessionId, peerId));
    if (!wait) return undefined;
    return new SignalError('rate_limited', `too many offers and ice-restart messages to switchboard from peer ${peerId}; retry in ${wait} s (RELAY_ICE_RESTARTS_PER_MIN)`, wait);
  }

  forget(sessionId: string, peerId: string): void {
    this.buckets?.delete(peerKey(sessionId, peerId));
  }
}

const NOTHING_YET: RelayStats = {
  sessions: 0,
  viewers: 0,
  connections: 0,
  packetsIn: 0,
  keyframeRequests: 0,
  packetsOut: 0,
  bytesOut: 0,
  retransmitted: 0,
  dropped: 0,
  keyframeCacheBytes: 0,
  keyframeCacheReplays: 0,
  keyframeCacheEvictions: 0,
};

export class LazyRelay implements ServerPeer {
  private engine: RelayEngine | undefined;
  private loading: Promise<void> | undefined;
  /** Calls made while the engine loads, replayed in their order once it is there. */
  private readonly pending: ((engine: RelayEngine) => void)[] = [];
  /** Candidates among `pending`, per peer: they are held in memory until the engine is there. */
  private readonly pendingCandidates = new Map<string, number>();
  private readonly restarts: IceRestartLimit;
  private stopped = false;

  constructor(
    private readonly config: RelayConfig,
    private readonly deps: RelayDeps & {
      /** Told when the engine cannot be loaded, or one of the calls replayed into it throws. */
      failed(error: unknown): void;
      /** Loads the engine's module (tests give their own). */
      load?: () => Promise<{ RelayEngine: typeof RelayEngine }>;
    },
  ) {
    this.restarts = new IceRestartLimit(deps.clock, config.relayIceRestartsPerMin);
  }

  joined(sessionId: string, peerId: string, role: Role): void {
    this.run((engine) => engine.joined(sessionId, peerId, role));
  }

  /** See `RelayEngine.reachable`: `role` for a peer that never registered (its signalling is its own HTTP exchange). */
  reachable(sessionId: string, peerId: string, role?: Role): void {
    this.run((engine) => engine.reachable(sessionId, peerId, role));
  }

  /** See `ServerPeer.offerNow`: undefined while the engine loads (the offer then comes over the stream). */
  offerNow(sessionId: string, peerId: string, waitMs: number): Promise<unknown> {
    return this.engine?.offerNow(sessionId, peerId, waitMs) ?? Promise.resolve(undefined);
  }

  left(sessionId: string, peerId: string): void {
    this.restarts.forget(sessionId, peerId);
    if (this.engine || this.loading) this.run((engine) => engine.left(sessionId, peerId));
  }

  receive(sessionId: string, peerId: string, type: string, payload: unknown): void {
    // Checked now, so that bad input is refused in the answer to its request even while loading.
    const message = parseMessage(type, payload);
    const key = peerKey(sessionId, peerId);
    if (negotiates(message)) {
      const limited = this.restarts.take(sessionId, peerId);
      if (limited) throw limited;
    }
    if (!this.engine && message.type === 'ice-candidate' && message.candidate) {
      const held = this.pendingCandidates.get(key) ?? 0;
      if (held >= MAX_REMOTE_CANDIDATES) {
        throw new SignalError(
          'too_many_candidates',
          `switchboard is starting and holds ${MAX_REMOTE_CANDIDATES} ICE candidates of peer ${peerId}, the most it holds; retry in a second`,
          1,
        );
      }
      this.pendingCandidates.set(key, held + 1);
    }
    this.run((engine) => engine.message(sessionId, peerId, message));
  }

  /** See `RelayEngine.expectOffer`. */
  expectOffer(sessionId: string, peerId: string): void {
    this.run((engine) => engine.expectOffer(sessionId, peerId));
  }

  /** See `RelayEngine.forgetOffer`. */
  forgetOffer(sessionId: string, peerId: string): void {
    if (this.engine || this.loading) this.run((engine) => engine.forgetOffer(sessionId, peerId));
  }

  /** See `RelayEngine.answer`; rejects with a `SignalError` when the engine cannot be loaded. */
  answer(sessionId: string, peerId: string, role: Role, offerSdp: string, onState?: (state: string) => void): Promise<string> {
    return this.withEngine((engine) => engine.answer(sessionId, peerId, role, offerSdp, onState));
  }

  /** See `RelayEngine.restartIce`. */
  restartIce(sessionId: string, peerId: string, remote: Pick<IceParameters, 'ufrag' | 'pwd'>): Promise<IceParameters | undefined> {
    return this.withEngine(async (engine) => engine.restartIce(sessionId, peerId, remote));
  }

  closed(sessionId: string): void {
    if (this.engine || this.loading) this.run((engine) => engine.closed(sessionId));
  }

  shutdown(): void {
    this.stopped = true;
    this.pending.length = 0;
    this.pendingCandidates.clear();
    this.engine?.shutdown();
  }

  stats(): RelayStats {
    return this.engine?.stats() ?? { ...NOTHING_YET };
  }

  /**
   * Loads the engine now, and what its first connection needs (RELAY_PREWARM=on, once the server
   * listens): the first relay viewer of the process then waits no longer than the others.
   */
  prewarm(): Promise<void> {
    this.run(() => {});
    return this.ready;
  }

  /** Whether the engine is loaded: once a relay session started, or it was prewarmed. */
  get loaded(): boolean {
    return this.engine !== undefined;
  }

  /** Resolves once the engine is loaded, if it was ever needed. */
  get ready(): Promise<void> {
    return this.loading ?? Promise.resolve();
  }

  /** Runs `call` once the engine is there, after the calls made before it. */
  private withEngine<T>(call: (engine: RelayEngine) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const unavailable = () => reject(new SignalError('invalid_request', 'this server cannot relay media now: the relay engine did not load'));
      if (this.stopped) return unavailable();
      this.run((engine) => call(engine).then(resolve, reject));
      void this.ready.then(() => {
        if (!this.engine) unavailable();
      });
    });
  }

  private run(call: (engine: RelayEngine) => void): void {
    if (this.stopped) return;
    if (this.engine) return call(this.engine);
    this.pending.push(call);
    this.loading ??= (this.deps.load ?? (() => import('./engine')))().then(
      ({ RelayEngine }) => {
        if (this.stopped) return;
        const engine = new RelayEngine(this.config, this.deps);
        this.engine = engine;
        // The engine loads at a registration; the offer waits for the peer's stream to open: the
        // certificate is made in between, not on the offer's path.
        engine.warm().catch((error: unknown) => this.deps.failed(error));
        this.pendingCandidates.clear();
        for (const pending of this.pending.splice(0)) {
          try {
            pending(engine);
          } catch (error) {
            this.deps.failed(error);
          }
        }
      },
      (error: unknown) => {
        // Nothing can relay: relay sessions get no offer, and their peers see ICE never start.
        this.stopped = true;
        this.pending.length = 0;
        this.pendingCandidates.clear();
        this.deps.failed(error);
      },
    );
  }
}

/** Ids cannot contain "/" (ID_PATTERN): the key names one peer of one session. */
const peerKey = (sessionId: string, peerId: string) => `${sessionId}/${peerId}`;
