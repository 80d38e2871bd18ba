import type { RelayStats } from '../relay/engine';
import type { RelayObserver } from '../relay/router';
import { type Collector, type Exposition, Histogram } from './exposition';

/** Phases of a connection, in milliseconds: from a few on loopback to the seconds of a cellular link or TURN. */
export const PHASE_BOUNDS_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000];

/**
 * Offers in flight between two peers of mesh sessions, for their offer → answer time. Bounded: a peer that
 * offers and never hears an answer must not make the server hold more; the oldest offer is forgotten first.
 */
const MAX_MESH_OFFERS = 4096;

/** What the histograms split by: the session's mode. */
type Mode = 'mesh' | 'relay';

/**
 * The phases of a WebRTC connection the server sees, per session mode, and the relay's own counts: in
 * a relay session the server is one end of every connection; in a mesh session it sees the offer and
 * the answer pass between the peers.
 */
export class ConnectionMetrics implements RelayObserver, Collector {
  private readonly offerAnswer: Record<Mode, Histogram> = { mesh: new Histogram(PHASE_BOUNDS_MS, 1000), relay: new Histogram(PHASE_BOUNDS_MS, 1000) };
  private readonly answerConnected = new Histogram(PHASE_BOUNDS_MS, 1000);
  private readonly firstPacket = new Histogram(PHASE_BOUNDS_MS, 1000);
  /** `session/from/to` → when the offer passed (ids hold no "/"). */
  private readonly meshOffers = new Map<string, number>();

  /**
   * @param now a monotonic clock in milliseconds
   * @param relay the relay's counts, read at scrape time (none without relay sessions)
   */
  constructor(
    private readonly now: () => number,
    private readonly relay?: () => RelayStats,
  ) {}

  /** A mesh peer's offer or answer passed through the server: an answer closes the offer the other way. */
  meshSignal(sessionId: string, from: string, to: string, type: string): void {
    if (type === 'offer') {
      const key = `${sessionId}/${from}/${to}`;
      this.meshOffers.delete(key);
      if (this.meshOffers.size >= MAX_MESH_OFFERS) {
        const oldest = this.meshOffers.keys().next().value;
        if (oldest !== undefined) this.meshOffers.delete(oldest);
      }
      this.meshOffers.set(key, this.now());
    } else if (type === 'answer') {
      const key = `${sessionId}/${to}/${from}`;
      const at = this.meshOffers.get(key);
      if (at === undefined) return;
      this.meshOffers.delete(key);
      this.offerAnswer.mesh.observe(this.now() - at);
    }
  }

  answered(ms: number): void {
    this.offerAnswer.relay.observe(ms);
  }

  iceConnected(ms: number): void {
    this.answerConnected.observe(ms);
  }

  firstVideoPacket(ms: number): void {
    this.firstPacket.observe(ms);
  }

  collect(out: Exposition): void {
    out.family(
      'switchboard_offer_answer_seconds',
      'histogram',
      "Time from an offer to its answer: in a mesh session between two peers, as both passed through the server; in a relay session from the server's offer sent to the peer's answer in.",
    );
    for (const mode of ['mesh', 'relay'] as const) out.histogram('switchboard_offer_answer_seconds', this.offerAnswer[mode], { mode });
    out.family('switchboard_answer_ice_connected_seconds', 'histogram', "Time from a peer's answer in to ICE connected, on the server's own connections (relay sessions).");
    out.histogram('switchboard_answer_ice_connected_seconds', this.answerConnected, { mode: 'relay' });
    out.family('switchboard_relay_first_video_packet_seconds', 'histogram', "Time from a relay viewer's connection made (its stream opened) to the first video packet sent to it.");
    out.histogram('switchboard_relay_first_video_packet_seconds', this.firstPacket);
    if (!this.relay) return;
    const s = this.relay();
    out.single('switchboard_relay_sessions', 'gauge', 'Relay sessions with media state on this server.', s.sessions);
    out.single('switchboard_relay_viewers', 'gauge', 'Viewers of relay sessions with a server-side connection.', s.viewers);
    out.single('switchboard_relay_connections', 'gauge', 'Server-side WebRTC connections open, publishers and viewers.', s.connections);
    out.single('switchboard_relay_packets_in_total', 'counter', 'RTP packets received from relay publishers.', s.packetsIn);
    out.single('switchboard_relay_packets_out_total', 'counter', 'RTP packets sent to relay viewers, retransmissions included.', s.packetsOut);
    out.single('switchboard_relay_bytes_out_total', 'counter', 'RTP payload bytes sent to relay viewers, retransmissions included.', s.bytesOut);
    out.single('switchboard_relay_retransmitted_total', 'counter', 'RTP packets resent to relay viewers for their NACKs.', s.retransmitted);
    out.single('switchboard_relay_dropped_total', 'counter', 'RTP packets dropped for a relay viewer that could not take them (its queue was full).', s.dropped);
    out.single('switchboard_relay_keyframe_requests_total', 'counter', 'Keyframe requests (PLI) sent to relay publishers.', s.keyframeRequests);
    out.single(
      'switchboard_relay_keyframe_cache_bytes',
      'gauge',
      "Bytes of video the publishers' keyframe caches hold (bounded by RELAY_KEYFRAME_CACHE_TOTAL_BYTES).",
      s.keyframeCacheBytes,
    );
    out.single(
      'switchboard_relay_keyframe_cache_replays_total',
      'counter',
      "Cached groups of pictures sent to joining relay viewers instead of waiting for the publisher's next keyframe.",
      s.keyframeCacheReplays,
    );
    out.single(
      'switchboard_relay_keyframe_cache_evictions_total',
      'counter',
      "Cached groups of pictures dropped to keep the keyframe caches under RELAY_KEYFRAME_CACHE_TOTAL_BYTES; those tracks' viewers wait for a keyframe.",
      s.keyframeCacheEvictions,
    );
  }
}
