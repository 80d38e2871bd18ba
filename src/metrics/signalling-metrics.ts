import type { DeliveryObserver, MessageOutcome, PeerLeftReason, ResumeOutcome } from '../delivery/observer';
import type { SessionGauges } from '../sessions/backend';
import { type Collector, type Exposition, Histogram } from './exposition';

/**
 * Client-chosen message types become one of a few labels, so that no client can grow the label set:
 * the three WebRTC ones by name, everything else as `other`.
 */
const TYPE_LABELS = ['offer', 'answer', 'ice-candidate', 'other'] as const;
const OUTCOME_LABELS = ['relayed', 'queued', 'rejected'] as const;

function typeIndex(type: string): number {
  switch (type) {
    case 'offer':
      return 0;
    case 'answer':
      return 1;
    case 'ice-candidate':
      return 2;
    default:
      return 3;
  }
}

function outcomeIndex(outcome: MessageOutcome): number {
  return outcome === 'relayed' ? 0 : outcome === 'queued' ? 1 : 2;
}

/** Accepted → written, in milliseconds: from a direct relay (well under 1 ms) to a message held for a minute. */
export const LATENCY_BOUNDS_MS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000];

/** What the server holds right now, read at scrape time. */
export interface SignallingGauges {
  sessions(): number;
  peers(): number;
  streams(): number;
  eventBytes(): number;
  /** The cluster's totals, in cluster mode only. */
  cluster(): Omit<SessionGauges, 'cluster'> | undefined;
}

/** The gauges of a backend's sessions on this instance (and its cluster's, if any) and of this process's open streams. */
export function signallingGauges(sessions: () => SessionGauges | undefined, streams: { readonly size: number }): SignallingGauges {
  return {
    sessions: () => sessions()?.sessions() ?? 0,
    peers: () => sessions()?.peers() ?? 0,
    streams: () => streams.size,
    eventBytes: () => sessions()?.eventBytes() ?? 0,
    cluster: () => sessions()?.cluster,
  };
}

/**
 * The signalling core's metrics. As its observer it only adds to numbers in typed arrays; the text is
 * built when Prometheus scrapes.
 */
export class SignallingMetrics implements DeliveryObserver, Collector {
  private readonly messages = new Float64Array(TYPE_LABELS.length * OUTCOME_LABELS.length);
  private joined = 0;
  private readonly left = { left: 0, timeout: 0 };
  private readonly resumes = { resumed: 0, resume_gap: 0, superseded: 0 };
  private readonly latency = new Histogram(LATENCY_BOUNDS_MS, 1000);

  /**
   * @param gauges reads the current sessions, peers and streams
   * @param now a monotonic clock in milliseconds, fine-grained enough for sub-millisecond relays
   */
  constructor(
    private readonly gauges: SignallingGauges,
    private readonly now: () => number = () => performance.now(),
  ) {}

  message(type: string, outcome: MessageOutcome): void {
    const i = typeIndex(type) * OUTCOME_LABELS.length + outcomeIndex(outcome);
    this.messages[i] = (this.messages[i] as number) + 1;
  }

  peerJoined(): void {
    this.joined++;
  }

  peerLeft(reason: PeerLeftReason): void {
    this.left[reason]++;
  }

  resumed(outcome: ResumeOutcome): void {
    this.resumes[outcome]++;
  }

  stamp(): number {
    return this.now();
  }

  delivered(stamp: number): void {
    this.latency.observe(this.now() - stamp);
  }

  collect(out: Exposition): void {
    out.single('switchboard_sessions', 'gauge', 'Sessions on this server (in a cluster: those with a peer this instance serves).', this.gauges.sessions());
    out.single('switchboard_peers', 'gauge', 'Registered peers on this server, with or without an open stream (in a cluster: those this instance serves).', this.gauges.peers());
    out.single('switchboard_open_streams', 'gauge', 'Open event streams.', this.gauges.streams());
    out.single('switchboard_event_bytes', 'gauge', 'Bytes of events held for the peers on this server or kept for their resume.', this.gauges.eventBytes());
    const cluster = this.gauges.cluster();
    if (cluster) {
      out.single('switchboard_cluster_sessions', 'gauge', 'Sessions in the whole cluster.', cluster.sessions());
      out.single('switchboard_cluster_peers', 'gauge', 'Registered peers in the whole cluster.', cluster.peers());
      out.single('switchboard_cluster_event_bytes', 'gauge', 'Bytes of events held or kept for resume in the whole cluster (MAX_EVENT_BYTES bounds it).', cluster.eventBytes());
    }

    out.family(
      'switchboard_messages_total',
      'counter',
      'Client messages by type (offer, answer, ice-candidate, other) and outcome: relayed to an open stream, queued for the target, or rejected.',
    );
    TYPE_LABELS.forEach((type, t) => {
      OUTCOME_LABELS.forEach((outcome, o) => {
        out.sample('switchboard_messages_total', this.messages[t * OUTCOME_LABELS.length + o] as number, { type, outcome });
      });
    });

    out.single('switchboard_peers_joined_total', 'counter', 'Registrations (takeovers included), each announced to the other peers as new-peer.', this.joined);
    out.family('switchboard_peers_left_total', 'counter', 'Peers that left or timed out without a stream, each announced to the others as peer-left.');
    for (const reason of ['left', 'timeout'] as const) out.sample('switchboard_peers_left_total', this.left[reason], { reason });

    out.family('switchboard_resumes_total', 'counter', 'Streams opened with a Last-Event-ID, by result: resumed, or refused (resume_gap, superseded).');
    for (const result of ['resumed', 'resume_gap', 'superseded'] as const) out.sample('switchboard_resumes_total', this.resumes[result], { result });

    out.family('switchboard_delivery_latency_seconds', 'histogram', "Time from a client message accepted to its being written to the target's stream, time held included.");
    out.histogram('switchboard_delivery_latency_seconds', this.latency);
  }
}
