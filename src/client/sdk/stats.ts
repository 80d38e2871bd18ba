// What getStats says about one connection, reduced to what a person checking a deployment looks at:
// which path the media takes (the selected candidate pair), how much flows, how smooth, how far.

import type { PeerStats } from './switchboard';

/** Counters from the previous reading, for rates. */
export interface StatsSnapshot {
  at: number;
  bytesIn: number;
  bytesOut: number;
}

type Report = Record<string, unknown> & { id: string; type: string; timestamp: number };

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Reads the connection's stats; rates are computed against `previous`. */
export async function readStats(pc: RTCPeerConnection, previous?: StatsSnapshot): Promise<{ stats: PeerStats; snapshot: StatsSnapshot }> {
  const reports = new Map<string, Report>();
  (await pc.getStats()).forEach((r: Report) => {
    reports.set(r.id, r);
  });

  const stats: PeerStats = { inKbps: 0, outKbps: 0, framesDecoded: 0, framesSent: 0, packetsLost: 0 };
  let bytesIn = 0;
  let bytesOut = 0;
  let at = 0;
  for (const r of reports.values()) {
    at = Math.max(at, r.timestamp);
    if (r.type === 'inbound-rtp') {
      bytesIn += num(r.bytesReceived) ?? 0;
      stats.packetsLost += num(r.packetsLost) ?? 0;
      if (r.kind === 'video') {
        stats.framesDecoded += num(r.framesDecoded) ?? 0;
        stats.framesPerSecond = num(r.framesPerSecond) ?? stats.framesPerSecond;
        stats.frameWidth = num(r.frameWidth) ?? stats.frameWidth;
        stats.frameHeight = num(r.frameHeight) ?? stats.frameHeight;
      }
    } else if (r.type === 'outbound-rtp') {
      bytesOut += num(r.bytesSent) ?? 0;
      if (r.kind === 'video') {
        stats.framesSent += num(r.framesSent) ?? 0;
        stats.sentFramesPerSecond = num(r.framesPerSecond) ?? stats.sentFramesPerSecond;
      }
    } else if (r.type === 'remote-inbound-rtp' && stats.rttMs === undefined) {
      const rtt = num(r.roundTripTime);
      if (rtt !== undefined) stats.rttMs = rtt * 1000;
    }
  }

  const pair = selectedPair(reports);
  if (pair) {
    const local = reports.get(pair.localCandidateId as string);
    const remote = reports.get(pair.remoteCandidateId as string);
    if (local && remote) {
      stats.pair = {
        local: String(local.candidateType ?? '?'),
        remote: String(remote.candidateType ?? '?'),
        protocol: String(local.protocol ?? ''),
        localAddress: endpoint(local),
        remoteAddress: endpoint(remote),
        relayProtocol: typeof local.relayProtocol === 'string' ? local.relayProtocol : undefined,
      };
    }
    const rtt = num(pair.currentRoundTripTime);
    if (rtt !== undefined) stats.rttMs = rtt * 1000;
  }

  if (previous && at > previous.at) {
    const seconds = (at - previous.at) / 1000;
    stats.inKbps = Math.max(0, ((bytesIn - previous.bytesIn) * 8) / 1000 / seconds);
    stats.outKbps = Math.max(0, ((bytesOut - previous.bytesOut) * 8) / 1000 / seconds);
  }
  return { stats, snapshot: { at, bytesIn, bytesOut } };
}

/** The pair in use: the transport names it (Chromium, Safari); Firefox marks it `selected`. */
function selectedPair(reports: Map<string, Report>): Report | undefined {
  for (const r of reports.values()) {
    if (r.type === 'transport' && typeof r.selectedCandidatePairId === 'string') {
      const pair = reports.get(r.selectedCandidatePairId);
      if (pair) return pair;
    }
  }
  let nominated: Report | undefined;
  for (const r of reports.values()) {
    if (r.type !== 'candidate-pair') continue;
    if (r.selected === true) return r;
    if (r.nominated === true && r.state === 'succeeded') nominated ??= r;
  }
  return nominated;
}

function endpoint(candidate: Report): string {
  const address = candidate.address ?? candidate.ip ?? '?';
  return `${address}:${candidate.port ?? '?'}`;
}
