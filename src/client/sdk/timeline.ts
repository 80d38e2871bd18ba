// How long a connection took to show video, phase by phase, as the browser sees it: from the first
// request of the join to the first decoded frame. The clock is the page's (performance.now()); the
// server's side of the same phases is in its /metrics.
import type { PeerTimeline, TimelinePhase } from './switchboard';

/** The phases in the order a viewer goes through them. */
export const TIMELINE_PHASES: readonly TimelinePhase[] = ['registered', 'offer', 'answer', 'iceConnected', 'dtlsConnected', 'firstPacket', 'firstFrame'];

/** getStats is read this often between ICE connected and the first decoded frame: the resolution of those two marks. */
const FINE_POLL_MS = 10;
/** The fine polling gives up after this long: a connection with no video must not poll for ever. */
const FINE_POLL_LIMIT_MS = 15_000;

/**
 * The phases a phase cannot happen without: seen first, it marks them too. ICE needs both descriptions,
 * but a browser may tell of ICE connected before the event that the answer was applied.
 */
const CAUSES: Partial<Record<TimelinePhase, readonly TimelinePhase[]>> = {
  iceConnected: ['offer', 'answer'],
  dtlsConnected: ['offer', 'answer', 'iceConnected'],
  firstPacket: ['offer', 'answer', 'iceConnected', 'dtlsConnected'],
  firstFrame: ['offer', 'answer', 'iceConnected', 'dtlsConnected', 'firstPacket'],
};

/** Milliseconds since the epoch, as precise as the page's clock. */
export const now = (): number => performance.timeOrigin + performance.now();

/**
 * The marks of one connection. Each phase is marked once, the first time it happens (a restart
 * later does not move it), in milliseconds after `startedAt`.
 */
export class TimelineRecorder {
  private readonly marks: PeerTimeline;
  private readonly watched = new WeakSet<RTCDtlsTransport>();
  private polling: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  constructor(startedAt: number, registeredAt?: number) {
    this.marks = { startedAt };
    if (registeredAt !== undefined) this.mark('registered', registeredAt);
  }

  get timeline(): PeerTimeline {
    return { ...this.marks };
  }

  /** Marks `phase` at `at` (now by default) unless it was marked already; true when this marked it. */
  mark(phase: TimelinePhase, at = now()): boolean {
    if (this.marks[phase] !== undefined) return false;
    this.marks[phase] = Math.max(0, at - this.marks.startedAt);
    return true;
  }

  /**
   * Follows `pc`: ICE and DTLS connected from its transports' own events (or the connection state,
   * which needs both), and, for a connection that receives media, the first packet from a remote
   * track's unmute (a browser unmutes it when packets come) or getStats, whichever says it first, and
   * the first decoded frame from getStats, read every few milliseconds once ICE is up. Events of
   * different sources may come in any order; a later phase seen first marks the earlier ones with it
   * (no DTLS without ICE, no packet without DTLS). `changed` is called after every new mark.
   */
  watch(pc: RTCPeerConnection, receives: boolean, changed: () => void): void {
    const markAndTell = (phase: TimelinePhase, at = now()) => {
      const before = CAUSES[phase] ?? [];
      let marked = false;
      for (const earlier of before) marked = this.mark(earlier, at) || marked;
      if (this.mark(phase, at) || marked) changed();
    };
    pc.addEventListener('iceconnectionstatechange', () => {
      if (pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed') {
        markAndTell('iceConnected');
        if (receives) this.pollUntilFrame(pc, markAndTell);
      }
    });
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState !== 'connected') return;
      // Connected means ICE and DTLS both are: a browser without DTLS transport events still gets both marks.
      markAndTell('iceConnected');
      markAndTell('dtlsConnected');
      if (receives) this.pollUntilFrame(pc, markAndTell);
    });
    pc.addEventListener('signalingstatechange', () => this.watchTransports(pc, markAndTell));
    if (!receives) return;
    pc.addEventListener('track', ({ track }) => {
      if (track.muted) track.addEventListener('unmute', () => markAndTell('firstPacket'), { once: true });
    });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.polling);
  }

  /** The transports exist once a description is set; each is followed once. */
  private watchTransports(pc: RTCPeerConnection, markAndTell: (phase: TimelinePhase) => void): void {
    for (const transceiver of pc.getTransceivers()) {
      const transport = transceiver.receiver.transport ?? transceiver.sender.transport;
      if (!transport || this.watched.has(transport)) continue;
      this.watched.add(transport);
      const dtls = () => {
        if (transport.state === 'connected') markAndTell('dtlsConnected');
      };
      const ice = transport.iceTransport;
      const iceUp = () => {
        if (ice.state === 'connected' || ice.state === 'completed') markAndTell('iceConnected');
      };
      transport.addEventListener('statechange', dtls);
      ice?.addEventListener('statechange', iceUp);
      if (ice) iceUp();
      dtls();
    }
  }

  private pollUntilFrame(pc: RTCPeerConnection, markAndTell: (phase: TimelinePhase, at?: number) => void): void {
    if (this.polling !== undefined || this.stopped || this.marks.firstFrame !== undefined) return;
    const deadline = now() + FINE_POLL_LIMIT_MS;
    const poll = async () => {
      if (this.stopped || pc.connectionState === 'closed' || now() > deadline) return;
      let packets = 0;
      let frames = 0;
      try {
        (await pc.getStats()).forEach((r: { type: string; kind?: string; packetsReceived?: number; framesDecoded?: number }) => {
          if (r.type !== 'inbound-rtp') return;
          packets += r.packetsReceived ?? 0;
          if (r.kind === 'video') frames += r.framesDecoded ?? 0;
        });
      } catch {
        return; // closed while reading
      }
      const at = now();
      if (packets > 0) markAndTell('firstPacket', at);
      if (frames > 0) markAndTell('firstFrame', at);
      if (this.marks.firstFrame === undefined) this.polling = setTimeout(() => void poll(), FINE_POLL_MS);
    };
    this.polling = setTimeout(() => void poll(), 0);
  }
}

/** `timeline` as "phase +Δ ms" steps (each phase's own duration) and the total, for people. */
export function describeTimeline(timeline: PeerTimeline, labels: Record<TimelinePhase, string>): string {
  const steps: string[] = [];
  let previous = 0;
  for (const phase of TIMELINE_PHASES) {
    const at = timeline[phase];
    if (at === undefined) continue;
    steps.push(`${labels[phase]} +${Math.round(at - previous)}`);
    previous = at;
  }
  return steps.length ? `${steps.join(' · ')} = ${Math.round(previous)} ms` : '—';
}
