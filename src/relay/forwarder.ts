// One track of the publisher, as every viewer's forwarder reads it, and one viewer's copy of it: RTP
// rewritten so that the viewer's decoder sees one continuous stream whoever publishes, retransmissions
// from the shared history, and a bounded number of packets in flight.
import { type RtcpPacket, RtcpSenderInfo, RtcpSrPacket, RtpHeader, type RtpPacket } from 'werift';
import type { Cancel, Clock } from '../clock';
import { KeyframeCache, type KeyframeCacheLimits } from './keyframe-cache';
import { type CodecFamily, codecFamily, ntpTimestamp, startsKeyframe, u16, u32 } from './rtp';

export type MediaKind = 'audio' | 'video';

/** A codec as SDP negotiated it: its payload type, `video/H264`, and its fmtp parameters. */
export interface NegotiatedCodec {
  payloadType: number;
  mimeType: string;
  clockRate: number;
  parameters?: string;
}

/** Packets of history kept per source track for retransmissions: about 1.5 s of 1.5 Mbit/s video. */
const HISTORY = 256;
const HISTORY_MASK = HISTORY - 1;

/**
 * The publisher's copy of one track. It lives as long as that publisher's connection: when the
 * publisher comes back, a new SourceTrack replaces it and every forwarder switches to it.
 */
export class SourceTrack {
  /** The codec of each payload type the publisher may send, by payload type. */
  private readonly codecs: (NegotiatedCodec | undefined)[] = new Array(128);
  private readonly families: CodecFamily[] = new Array(128).fill('other');
  /** The last HISTORY packets, by sequence number: a NACK from any viewer is answered from here. */
  private readonly history: (RtpPacket | undefined)[] = new Array(HISTORY);
  /** Video since the last keyframe, replayed to a viewer that joins (none for audio, or with the cache off). */
  readonly cache: KeyframeCache | undefined;

  constructor(
    readonly kind: MediaKind,
    codecs: readonly NegotiatedCodec[],
    readonly clockRate: number,
    cacheLimits?: KeyframeCacheLimits,
  ) {
    for (const codec of codecs) {
      this.codecs[codec.payloadType & 0x7f] = codec;
      this.families[codec.payloadType & 0x7f] = codecFamily(codec.mimeType);
    }
    this.cache = kind === 'video' && cacheLimits !== undefined && cacheLimits.maxBytes > 0 ? new KeyframeCache(cacheLimits) : undefined;
  }

  /** The publisher's track is gone: its cached group goes, and its bytes back to the pool. */
  close(): void {
    this.cache?.clear();
  }

  codec(payloadType: number): NegotiatedCodec | undefined {
    return this.codecs[payloadType & 0x7f];
  }

  family(payloadType: number): CodecFamily {
    return this.families[payloadType & 0x7f] ?? 'other';
  }

  /** A packet from the publisher, at `now` (clock ms): into the history and the keyframe cache. */
  remember(packet: RtpPacket, now: number): void {
    this.history[packet.header.sequenceNumber & HISTORY_MASK] = packet;
    this.cache?.add(packet, this.family(packet.header.payloadType), now);
  }

  /** The packet with this sequence number, if it is still in the history or the cached group of pictures. */
  recall(sequenceNumber: number): RtpPacket | undefined {
    const packet = this.history[sequenceNumber & HISTORY_MASK];
    return packet?.header.sequenceNumber === sequenceNumber ? packet : this.cache?.recall(sequenceNumber);
  }
}

/** Where a forwarder writes: one sender of one viewer's connection (see `senderOutput`). */
export interface RtpOutput {
  readonly ssrc: number;
  /** Whether the connection can carry media (DTLS done, SRTP keys there). */
  readonly ready: boolean;
  /** Encrypts and sends; the header is read before this returns, so the caller may reuse it. */
  send(header: RtpHeader, payload: Buffer): Promise<unknown>;
  sendRtcp(packets: RtcpPacket[]): void;
}

/** Packets sent and not yet handed to the socket, per viewer track; past it packets are dropped for that viewer. */
export const MAX_IN_FLIGHT = 256;
/**
 * A cached group of pictures is replayed this fast: the first REPLAY_BURST_BYTES at once (a keyframe of
 * a 1.5 Mbit/s camera, and more, well inside a receiver's socket buffer), the rest at REPLAY_BYTES_PER_S
 * (20 Mbit/s: 1.9 MB, a 10 s group at 1.5 Mbit/s, in under a second), in steps of REPLAY_STEP_MS.
 * Sent all at once, a long group overflows the viewer's socket buffer and is lost.
 */
export const REPLAY_BURST_BYTES = 128 * 1024;
export const REPLAY_BYTES_PER_S = 2_500_000;
const REPLAY_STEP_MS = 10;

/** Retransmissions one viewer track may ask for: a burst, refilled at this rate per second. */
const RETRANSMIT_BURST = 128;
const RETRANSMITS_PER_S = 400;

export interface ForwarderCounters {
  packets: number;
  bytes: number;
  retransmitted: number;
  dropped: number;
  /** Cached groups of pictures replayed to the viewer (its start, and each new publisher's). */
  replays: number;
}

const NO_EXTENSIONS: never[] = [];

/**
 * One viewer's copy of one publisher track. Sequence numbers and timestamps are offset per source so
 * that the viewer sees one stream with its own SSRC: a source switch continues where the last one
 * stopped, its timestamps advanced by the time that passed. Video starts at a keyframe.
 */
export class TrackForwarder {
  readonly counters: ForwarderCounters = { packets: 0, bytes: 0, retransmitted: 0, dropped: 0, replays: 0 };
  private source: SourceTrack | undefined;
  /** Source payload type → the viewer's payload type for the same codec, -1 when the viewer has none. */
  private readonly payloadTypes = new Int16Array(128).fill(-1);
  private viewerCodecs: readonly NegotiatedCodec[] = [];
  private waitingForKeyframe: boolean;
  /** The next packet starts a new source (or the first one): offsets are set from it. */
  private startEpoch = true;
  private seqOffset = 0;
  private tsOffset = 0;
  private sentAny = false;
  /** The newest sequence number and timestamp sent, and when (clock ms). */
  private lastSeq = 0;
  private lastTs = 0;
  private lastSentAt = 0;
  /** The cached group of pictures being replayed to this viewer, the next index in it, and the last source sequence number sent. */
  private replay: readonly RtpPacket[] | undefined;
  private replayAt = 0;
  private replayedSeq = 0;
  /** Bytes the replay may send now, refilled at REPLAY_BYTES_PER_S; the step scheduled when they ran out. */
  private replayBytes = 0;
  private replayBytesAt = 0;
  private replayStep: Cancel | undefined;
  private inFlight = 0;
  private tokens = RETRANSMIT_BURST;
  private tokensAt = 0;
  private readonly header = new RtpHeader();
  private readonly settle = () => {
    this.inFlight--;
    if (this.replay) this.pump(this.clock.now());
  };

  constructor(
    readonly kind: MediaKind,
    private readonly output: RtpOutput,
    private readonly clock: Clock,
    /** Asks the publisher for a keyframe (rate-limited by the router). */
    private readonly wantKeyframe: () => void,
    /** Told once per source when the viewer cannot take the publisher's codec. */
    private readonly unsupported: (mimeType: string) => void = () => {},
    /** Told once, when the first packet is written to the viewer. */
    private readonly started: () => void = () => {},
  ) {
    this.waitingForKeyframe = kind === 'video';
    this.header.ssrc = output.ssrc;
    this.header.extensions = NO_EXTENSIONS;
  }

  /** The viewer's answer is in: the codecs it takes, with its payload types. */
  setViewerCodecs(codecs: readonly NegotiatedCodec[]): void {
    this.viewerCodecs = codecs;
    this.mapPayloadTypes();
  }

  /** Whether the viewer is waiting for a keyframe before it gets video. */
  get waiting(): boolean {
    return this.waitingForKeyframe;
  }

  /** `now` is the clock's time, read once per packet for all viewers. */
  forward(packet: RtpPacket, source: SourceTrack, now: number): void {
    if (!this.output.ready) return;
    this.use(source);
    const { header, payload } = packet;
    if (this.replay) {
      // The packet is in the cached group being replayed (the source cached it before the fan-out):
      // it goes out in its turn, unless the group ended under the replay.
      this.pump(now);
      if (this.replay || u16(header.sequenceNumber - this.replayedSeq - 1) >= 0x8000) return;
    }
    const payloadType = this.payloadTypes[header.payloadType & 0x7f] ?? -1;
    if (payloadType < 0) return;
    if (this.waitingForKeyframe) {
      if (!startsKeyframe(source.family(header.payloadType), payload)) {
        if (this.prime(source, now)) return;
        this.wantKeyframe();
        return;
      }
      this.waitingForKeyframe = false;
    }
    if (this.startEpoch) {
      this.startEpoch = false;
      this.continueFrom(header.sequenceNumber, header.timestamp, source.clockRate, now);
    }
    if (this.inFlight >= MAX_IN_FLIGHT) {
      this.counters.dropped++;
      return;
    }
    this.send(packet, payloadType, now);
  }

  /**
   * A viewer waiting for a keyframe (it just connected, or its source changed) is sent the source's
   * cached group of pictures, from its keyframe on, at once: REPLAY_BURST_BYTES, then paced at
   * REPLAY_BYTES_PER_S, never more than MAX_IN_FLIGHT packets in flight; the live packets follow it.
   * True when a replay started.
   */
  prime(source: SourceTrack, now: number): boolean {
    if (!this.output.ready) return false;
    this.use(source);
    if (!this.waitingForKeyframe || this.replay) return false;
    const gop = source.cache?.packets(now);
    const first = gop?.[0];
    if (!gop || !first || (this.payloadTypes[first.header.payloadType & 0x7f] ?? -1) < 0) return false;
    this.waitingForKeyframe = false;
    this.startEpoch = false;
    this.counters.replays++;
    this.continueFrom(first.header.sequenceNumber, first.header.timestamp, source.clockRate, now);
    this.replay = gop;
    this.replayAt = 0;
    this.replayedSeq = u16(first.header.sequenceNumber - 1);
    this.replayBytes = REPLAY_BURST_BYTES;
    this.replayBytesAt = now;
    this.pump(now);
    return true;
  }

  /** Whether a cached group of pictures is being replayed to the viewer. */
  get replaying(): boolean {
    return this.replay !== undefined;
  }

  private use(source: SourceTrack): void {
    if (source === this.source) return;
    this.source = source;
    this.mapPayloadTypes();
    this.waitingForKeyframe = this.kind === 'video';
    this.startEpoch = true;
    this.endReplay();
  }

  private endReplay(): void {
    this.replay = undefined;
    this.replayStep?.();
    this.replayStep = undefined;
  }

  /**
   * Sends the replay on while its byte budget and the packets in flight allow; a group replaced meanwhile
   * goes on from the packet after the last one sent.
   */
  private pump(now: number): void {
    const source = this.source;
    if (!source || !this.output.ready) return this.endReplay();
    if (this.replayStep) return; // the next step is scheduled: its budget is not there yet
    this.replayBytes = Math.min(REPLAY_BURST_BYTES, this.replayBytes + ((now - this.replayBytesAt) * REPLAY_BYTES_PER_S) / 1000);
    this.replayBytesAt = now;
    while (this.replay && this.inFlight < MAX_IN_FLIGHT) {
      if (this.replayAt >= this.replay.length) {
        const current = source.cache?.packets(now);
        if (!current || current === this.replay) return this.endReplay();
        this.replay = current;
        this.replayAt = current.findIndex((p) => u16(p.header.sequenceNumber - this.replayedSeq - 1) < 0x8000);
        if (this.replayAt < 0) return this.endReplay();
        continue;
      }
      if (this.replayBytes <= 0) {
        this.replayStep = this.clock.schedule(REPLAY_STEP_MS, () => {
          this.replayStep = undefined;
          this.pump(this.clock.now());
        });
        return;
      }
      const packet = this.replay[this.replayAt++] as RtpPacket;
      this.replayBytes -= packet.payload.length;
      this.replayedSeq = packet.header.sequenceNumber;
      const payloadType = this.payloadTypes[packet.header.payloadType & 0x7f] ?? -1;
      if (payloadType >= 0) this.send(packet, payloadType, now);
    }
  }

  private send(packet: RtpPacket, payloadType: number, now: number): void {
    const { header, payload } = packet;
    const seq = u16(header.sequenceNumber + this.seqOffset);
    const ts = u32(header.timestamp + this.tsOffset);
    if (!this.sentAny) this.started();
    this.write(seq, ts, payloadType, header.marker, payload);
    if (!this.sentAny || u16(seq - this.lastSeq) < 0x8000) {
      this.sentAny = true;
      this.lastSeq = seq;
      this.lastTs = ts;
      this.lastSentAt = now;
    }
  }

  /** The viewer lost these packets (its sequence numbers): resend those still in the source's history. */
  retransmit(lost: readonly number[]): void {
    const source = this.source;
    if (!source || !this.output.ready || !this.sentAny) return;
    this.refill();
    for (const seq of lost) {
      if (this.tokens < 1) return;
      const packet = source.recall(u16(seq - this.seqOffset));
      if (!packet) continue;
      const payloadType = this.payloadTypes[packet.header.payloadType & 0x7f] ?? -1;
      if (payloadType < 0) continue;
      this.tokens--;
      this.counters.retransmitted++;
      this.write(seq, u32(packet.header.timestamp + this.tsOffset), payloadType, packet.header.marker, packet.payload);
    }
  }

  /** An RTCP sender report for this track (lip sync in the viewer), or nothing before the first packet. */
  senderReport(): RtcpSrPacket | undefined {
    if (!this.sentAny || !this.source) return undefined;
    const now = this.clock.now();
    const rtpTimestamp = u32(this.lastTs + Math.round(((now - this.lastSentAt) * this.source.clockRate) / 1000));
    return new RtcpSrPacket({
      ssrc: this.output.ssrc,
      senderInfo: new RtcpSenderInfo({
        ntpTimestamp: ntpTimestamp(now),
        rtpTimestamp,
        packetCount: u32(this.counters.packets),
        octetCount: u32(this.counters.bytes),
      }),
    });
  }

  private write(seq: number, ts: number, payloadType: number, marker: boolean, payload: Buffer): void {
    const { header } = this;
    header.sequenceNumber = seq;
    header.timestamp = ts;
    header.payloadType = payloadType;
    header.marker = marker;
    this.inFlight++;
    this.counters.packets++;
    this.counters.bytes += payload.length;
    this.output.send(header, payload).then(this.settle, this.settle);
  }

  /** Offsets that make the source's first packet follow the last one sent, as time has passed. */
  private continueFrom(seq: number, ts: number, clockRate: number, now: number): void {
    let nextSeq: number;
    let nextTs: number;
    if (this.sentAny) {
      nextSeq = u16(this.lastSeq + 1);
      const elapsed = Math.max(1, Math.round(((now - this.lastSentAt) * clockRate) / 1000));
      nextTs = u32(this.lastTs + elapsed);
    } else {
      nextSeq = (Math.random() * 0x8000) | 0;
      nextTs = (Math.random() * 0x8000_0000) >>> 0;
    }
    this.seqOffset = u16(nextSeq - seq);
    this.tsOffset = u32(nextTs - ts);
  }

  private mapPayloadTypes(): void {
    this.payloadTypes.fill(-1);
    const source = this.source;
    if (!source || this.viewerCodecs.length === 0) return;
    for (let pt = 0; pt < 128; pt++) {
      const codec = source.codec(pt);
      if (!codec) continue;
      const match = matchCodec(codec, this.viewerCodecs);
      if (match) this.payloadTypes[pt] = match.payloadType;
      else this.unsupported(codec.mimeType);
    }
  }

  private refill(): void {
    const now = this.clock.now();
    const elapsed = now - this.tokensAt;
    this.tokensAt = now;
    if (elapsed > 0) this.tokens = Math.min(RETRANSMIT_BURST, this.tokens + (elapsed * RETRANSMITS_PER_S) / 1000);
  }
}

/**
 * The viewer's codec for what the publisher sends: the same name, and for H.264 the same packetization
 * mode, preferring the same profile (a decoder takes any profile in practice: the name is what matters).
 */
export function matchCodec(source: NegotiatedCodec, offered: readonly NegotiatedCodec[]): NegotiatedCodec | undefined {
  const name = source.mimeType.toLowerCase();
  const same = offered.filter((c) => c.mimeType.toLowerCase() === name);
  if (name !== 'video/h264') return same[0];
  const mode = fmtp(source.parameters, 'packetization-mode') ?? '0';
  const modeMatches = same.filter((c) => (fmtp(c.parameters, 'packetization-mode') ?? '0') === mode);
  const profile = fmtp(source.parameters, 'profile-level-id')?.slice(0, 2).toLowerCase();
  return modeMatches.find((c) => fmtp(c.parameters, 'profile-level-id')?.slice(0, 2).toLowerCase() === profile) ?? modeMatches[0];
}

function fmtp(parameters: string | undefined, key: string): string | undefined {
  for (const part of parameters?.split(';') ?? []) {
    const [name, value] = part.trim().split('=');
    if (name === key) return value;
  }
  return undefined;
}
