// The packets of one published video track since its last keyframe: what a viewer that joins now needs
// to decode the current picture at once, instead of waiting for the publisher's next keyframe (a
// dashcam's encoder often ignores keyframe requests and sends one every 2-10 s).
import type { RtpPacket } from 'werift';
import { type CodecFamily, onlyParameterSets, startsKeyframe } from './rtp';

/** How much one track's cache may hold: over either bound it holds nothing until the next keyframe. */
export interface KeyframeCacheLimits {
  /** Bytes of payload (RELAY_KEYFRAME_CACHE_BYTES); 0 turns the cache off. */
  maxBytes: number;
  /** Milliseconds since the keyframe (RELAY_KEYFRAME_CACHE_MS): older, the burst would be more than a viewer should replay. */
  maxAgeMs: number;
  /** What every track's cache in the process holds together (RELAY_KEYFRAME_CACHE_TOTAL_BYTES); none: no bound but the track's. */
  pool?: KeyframeCachePool;
}

/**
 * The process-wide bound on the keyframe caches (RELAY_KEYFRAME_CACHE_TOTAL_BYTES): per-track bounds
 * alone let MAX_RELAY_PEERS publishers make the server hold MAX_RELAY_PEERS × RELAY_KEYFRAME_CACHE_BYTES.
 * Over it, the largest group held is dropped (it frees the most for one viewer's loss), until the
 * total fits; that track's joining viewers wait for its next keyframe, as with the cache off.
 */
export class KeyframeCachePool {
  private readonly held = new Map<KeyframeCache, number>();
  private total = 0;
  /** Groups dropped to keep the total under the bound, since start. */
  evictions = 0;

  constructor(readonly maxBytes: number) {}

  /** Payload bytes every cache holds now. */
  get bytes(): number {
    return this.total;
  }

  /** A cache now holds `bytes`: the total follows, and over the bound the largest groups are dropped. */
  account(cache: KeyframeCache, bytes: number): void {
    this.total += bytes - (this.held.get(cache) ?? 0);
    if (bytes > 0) this.held.set(cache, bytes);
    else this.held.delete(cache);
    while (this.total > this.maxBytes) {
      let largest: KeyframeCache | undefined;
      let most = 0;
      for (const [c, b] of this.held) {
        if (b > most) [largest, most] = [c, b];
      }
      if (!largest) return;
      this.evictions++;
      this.held.delete(largest);
      this.total -= most;
      largest.drop();
    }
  }
}

/**
 * One group of pictures, keyframe first. A keyframe that starts with the same RTP timestamp as the
 * group's belongs to it (one picture in several slices, or H.264 parameter sets sent before the IDR);
 * H.264 parameter sets sent just before a new keyframe move with it into the new group.
 */
export class KeyframeCache {
  private gop: RtpPacket[] = [];
  private bytes = 0;
  private keyTimestamp = 0;
  private keyAt = 0;

  constructor(private readonly limits: KeyframeCacheLimits) {}

  /** Payload bytes held now. */
  get size(): number {
    return this.bytes;
  }

  /** Takes a packet as the publisher sent it, of its payload type's codec; `now` is the clock's time in milliseconds. */
  add(packet: RtpPacket, family: CodecFamily, now: number): void {
    if (this.limits.maxBytes <= 0 || (family !== 'vp8' && family !== 'h264')) return;
    const { payload, header } = packet;
    if (startsKeyframe(family, payload) && !(this.gop.length > 0 && header.timestamp === this.keyTimestamp)) {
      this.restart(header.timestamp, family, now);
    } else if (this.gop.length === 0) {
      return; // nothing decodable before a keyframe
    }
    if (this.bytes + payload.length > this.limits.maxBytes) {
      this.clear();
      return;
    }
    this.gop.push(packet);
    this.setBytes(this.bytes + payload.length);
  }

  /**
   * The group of pictures to replay to a joining viewer, keyframe first, or undefined when none is held
   * (no keyframe yet, or the group outgrew its bounds). The array grows as packets arrive, until the
   * next keyframe replaces it: a reader holding it may go on reading.
   */
  packets(now: number): readonly RtpPacket[] | undefined {
    if (this.gop.length === 0) return undefined;
    if (now - this.keyAt > this.limits.maxAgeMs) {
      this.clear();
      return undefined;
    }
    return this.gop;
  }

  /** The packet with this sequence number, if the group holds it (NACKs of a replay reach further back than the history). */
  recall(sequenceNumber: number): RtpPacket | undefined {
    const first = this.gop[0];
    if (!first) return undefined;
    const packet = this.gop[(sequenceNumber - first.header.sequenceNumber) & 0xffff];
    return packet?.header.sequenceNumber === sequenceNumber ? packet : undefined;
  }

  /** Lets the group go, and its bytes back to the pool: the publisher's track ended, or the group outgrew its bounds. */
  clear(): void {
    this.drop();
    this.limits.pool?.account(this, 0);
  }

  /** Lets the group go; the pool that asks for it has taken its bytes back already. */
  drop(): void {
    this.gop = [];
    this.bytes = 0;
  }

  private setBytes(bytes: number): void {
    this.bytes = bytes;
    this.limits.pool?.account(this, bytes);
  }

  private restart(timestamp: number, family: CodecFamily, now: number): void {
    // H.264 parameter sets at the end of the old group, for this picture, open the new one.
    let keep = this.gop.length;
    while (family === 'h264' && keep > 0) {
      const tail = this.gop[keep - 1] as RtpPacket;
      if (tail.header.timestamp !== timestamp || !onlyParameterSets(tail.payload)) break;
      keep--;
    }
    const carried = this.gop.slice(keep);
    this.gop = carried;
    this.setBytes(carried.reduce((sum, p) => sum + p.payload.length, 0));
    this.keyTimestamp = timestamp;
    this.keyAt = now;
  }
}
