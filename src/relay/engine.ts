// The `switchboard` peer of relay sessions: one router per session, fed by the signalling service.
import { RTCDtlsTransport } from 'werift';
import type { Clock } from '../clock';
import type { ServerOutbox, ServerPeer } from '../sessions/server-peer';
import type { Role } from '../sessions/store';
import type { IceParameters } from './answering';
import { KeyframeCachePool } from './keyframe-cache';
import type { LinkMessage } from './link';
import { parseMessage } from './messages';
import { type RelayObserver, SessionRouter } from './router';
import { publisherConfig, type RelayConfig, viewerConfig } from './settings';

export interface RelayDeps {
  clock: Clock;
  log(line: string): void;
  /** Delivers an event from `switchboard` into a peer's mailbox (`LocalSignalling.fromServer`). */
  outbox: ServerOutbox;
  /** Told how long each phase of a relay connection took (metrics). */
  observer?: RelayObserver;
}

/** What the relay is doing, for logs and the benchmark. */
export interface RelayStats {
  sessions: number;
  viewers: number;
  /** Server-side connections open now, each with its UDP socket and DTLS certificate. */
  connections: number;
  /** RTP packets received from publishers since start. */
  packetsIn: number;
  keyframeRequests: number;
  /** RTP packets sent to viewers since start, retransmissions among them, and packets dropped for a viewer that could not take them. */
  packetsOut: number;
  /** RTP payload bytes sent to viewers since start. */
  bytesOut: number;
  retransmitted: number;
  dropped: number;
  /** Payload bytes the publishers' keyframe caches hold now (RELAY_KEYFRAME_CACHE_BYTES, RELAY_KEYFRAME_CACHE_TOTAL_BYTES). */
  keyframeCacheBytes: number;
  /** Cached groups replayed to joining viewers, and groups dropped to keep under RELAY_KEYFRAME_CACHE_TOTAL_BYTES, since start. */
  keyframeCacheReplays: number;
  keyframeCacheEvictions: number;
}

export class RelayEngine implements ServerPeer {
  private readonly routers = new Map<string, SessionRouter>();
  private readonly publisher;
  private readonly viewer;
  private readonly closedCounters = { packetsIn: 0, keyframeRequests: 0, packetsOut: 0, bytesOut: 0, retransmitted: 0, dropped: 0, keyframeCacheReplays: 0 };
  private readonly keyframeCache;
  /** Peers registering with an offer of their own (WHIP, WHEP), by session: they get no offer from the server. */
  private readonly ownOffers = new Map<string, Set<string>>();

  constructor(
    private readonly config: RelayConfig,
    private readonly deps: RelayDeps,
  ) {
    this.publisher = publisherConfig(config);
    this.viewer = viewerConfig(config);
    this.keyframeCache = {
      maxBytes: config.relayKeyframeCacheBytes,
      maxAgeMs: config.relayKeyframeCacheMs,
      pool: new KeyframeCachePool(config.relayKeyframeCacheTotalBytes),
    };
  }

  /**
   * Makes what the first connection needs before it is needed: werift signs one DTLS certificate per
   * process, for every connection, when the first one offers (about 25 ms, and more on a busy core).
   */
  warm(): Promise<unknown> {
    return RTCDtlsTransport.SetupCertificate();
  }

  joined(sessionId: string, peerId: string, role: Role): void {
    const router = this.router(sessionId);
    if (this.ownOffers.get(sessionId)?.has(peerId)) return;
    router.join(peerId, role);
  }

  /**
   * The hook for "this peer can be reached, allocate now" (see `SessionRouter.reachable`): a stream of a
   * registered peer opened, or a peer whose signalling is its own HTTP exchange arrived (then with `role`).
   */
  reachable(sessionId: string, peerId: string, role?: Role): boolean {
    return this.router(sessionId).reachable(peerId, role);
  }

  /** See `ServerPeer.offerNow`. */
  offerNow(sessionId: string, peerId: string, waitMs: number): Promise<unknown> {
    return this.routers.get(sessionId)?.offerNow(peerId, waitMs) ?? Promise.resolve(undefined);
  }

  left(sessionId: string, peerId: string): void {
    this.forgetOffer(sessionId, peerId);
    this.routers.get(sessionId)?.leave(peerId);
  }

  /** The peer about to register brings its own offer (`answer` follows): the server must not offer to it. */
  expectOffer(sessionId: string, peerId: string): void {
    let peers = this.ownOffers.get(sessionId);
    if (!peers) this.ownOffers.set(sessionId, (peers = new Set()));
    peers.add(peerId);
  }

  /** The registration with an offer of its own did not happen after all. */
  forgetOffer(sessionId: string, peerId: string): void {
    const peers = this.ownOffers.get(sessionId);
    if (!peers?.delete(peerId)) return;
    if (peers.size === 0) this.ownOffers.delete(sessionId);
  }

  /** Answers the offer of a registered peer that made its own (WHIP, WHEP); see `SessionRouter.answer`. */
  answer(sessionId: string, peerId: string, role: Role, offerSdp: string, onState?: (state: string) => void): Promise<string> {
    this.forgetOffer(sessionId, peerId);
    return this.router(sessionId).answer(peerId, role, offerSdp, onState);
  }

  /** An ICE restart of a peer that made its own offer; undefined when it has no such connection. */
  restartIce(sessionId: string, peerId: string, remote: Pick<IceParameters, 'ufrag' | 'pwd'>): Promise<IceParameters> | undefined {
    return this.routers.get(sessionId)?.restartIce(peerId, remote);
  }

  receive(sessionId: string, peerId: string, type: string, payload: unknown): void {
    this.message(sessionId, peerId, parseMessage(type, payload));
  }

  /** A message to `switchboard`, already checked (`parseMessage`). */
  message(sessionId: string, peerId: string, message: LinkMessage): void {
    this.routers.get(sessionId)?.message(peerId, message);
  }

  closed(sessionId: string): void {
    const router = this.routers.get(sessionId);
    this.ownOffers.delete(sessionId);
    if (!router) return;
    this.routers.delete(sessionId);
    const closed = this.closedCounters;
    closed.packetsIn += router.counters.packetsIn;
    closed.keyframeRequests += router.counters.keyframeRequests;
    router.close();
    const out = router.forwarded();
    closed.packetsOut += out.packets;
    closed.bytesOut += out.bytes;
    closed.retransmitted += out.retransmitted;
    closed.dropped += out.dropped;
    closed.keyframeCacheReplays += out.replays;
  }

  shutdown(): void {
    for (const id of [...this.routers.keys()]) this.closed(id);
  }

  stats(): RelayStats {
    const { pool } = this.keyframeCache;
    const stats: RelayStats = {
      sessions: this.routers.size,
      viewers: 0,
      connections: 0,
      ...this.closedCounters,
      keyframeCacheBytes: pool.bytes,
      keyframeCacheEvictions: pool.evictions,
    };
    for (const router of this.routers.values()) {
      stats.viewers += router.viewerCount;
      stats.connections += router.linkCount;
      stats.packetsIn += router.counters.packetsIn;
      stats.keyframeRequests += router.counters.keyframeRequests;
      const out = router.forwarded();
      stats.packetsOut += out.packets;
      stats.bytesOut += out.bytes;
      stats.retransmitted += out.retransmitted;
      stats.dropped += out.dropped;
      stats.keyframeCacheReplays += out.replays;
    }
    return stats;
  }

  private router(sessionId: string): SessionRouter {
    let router = this.routers.get(sessionId);
    if (!router) {
      router = new SessionRouter(sessionId, {
        clock: this.deps.clock,
        log: this.deps.log,
        send: (peerId, type, payload) => {
          this.deps.outbox(sessionId, peerId, type, payload);
        },
        publisherConfig: this.publisher,
        viewerConfig: this.viewer,
        publicIp: this.config.relayPublicIp,
        keyframeCache: this.keyframeCache,
        observer: this.deps.observer,
      });
      this.routers.set(sessionId, router);
    }
    return router;
  }
}
