// What the relay needs to know about RTP payloads and clocks, without parsing more than it must.

/** Codecs the relay forwards, by the RTP payload format that matters for keyframe detection. */
export type CodecFamily = 'vp8' | 'h264' | 'opus' | 'other';

export function codecFamily(mimeType: string): CodecFamily {
  const name = mimeType.toLowerCase();
  if (name === 'video/vp8') return 'vp8';
  if (name === 'video/h264') return 'h264';
  if (name === 'audio/opus') return 'opus';
  return 'other';
}

/**
 * Whether this packet starts a keyframe: a viewer that joins (or a source that changes) is sent video
 * from such a packet on, so that its decoder never starts on a frame it cannot decode.
 */
export function startsKeyframe(family: CodecFamily, payload: Uint8Array): boolean {
  if (family === 'vp8') return vp8StartsKeyframe(payload);
  if (family === 'h264') return h264StartsKeyframe(payload);
  return true;
}

/** RFC 7741: the payload descriptor, then (at a partition start) the VP8 frame header's P bit, 0 for a keyframe. */
function vp8StartsKeyframe(p: Uint8Array): boolean {
  if (p.length < 1) return false;
  const first = p[0] as number;
  const start = (first & 0x10) !== 0;
  const partition = first & 0x07;
  if (!start || partition !== 0) return false;
  let offset = 1;
  if (first & 0x80) {
    const x = p[offset] ?? 0;
    offset++;
    if (x & 0x80) offset += ((p[offset] ?? 0) & 0x80) !== 0 ? 2 : 1; // PictureID, 7 or 15 bits
    if (x & 0x40) offset++; // TL0PICIDX
    if (x & 0x30) offset++; // TID / KEYIDX
  }
  if (offset >= p.length) return false;
  return ((p[offset] as number) & 0x01) === 0;
}

const H264_IDR = 5;
const H264_SPS = 7;
const H264_PPS = 8;
const H264_STAP_A = 24;
const H264_FU_A = 28;

/** RFC 6184: an IDR slice or a sequence parameter set, alone, aggregated (STAP-A) or at a fragment's start (FU-A). */
function h264StartsKeyframe(p: Uint8Array): boolean {
  if (p.length < 1) return false;
  const type = (p[0] as number) & 0x1f;
  if (type === H264_IDR || type === H264_SPS) return true;
  if (type === H264_FU_A) {
    const header = p[1] ?? 0;
    const inner = header & 0x1f;
    return (header & 0x80) !== 0 && (inner === H264_IDR || inner === H264_SPS);
  }
  if (type === H264_STAP_A) {
    let offset = 1;
    while (offset + 2 < p.length) {
      const size = ((p[offset] as number) << 8) | (p[offset + 1] as number);
      const inner = (p[offset + 2] as number) & 0x1f;
      if (inner === H264_IDR || inner === H264_SPS) return true;
      offset += 2 + size;
    }
  }
  return false;
}

/**
 * Whether an H.264 payload carries only sequence or picture parameter sets (alone or aggregated in a
 * STAP-A): sent just before an IDR, they belong to its group of pictures.
 */
export function onlyParameterSets(p: Uint8Array): boolean {
  if (p.length < 1) return false;
  const type = (p[0] as number) & 0x1f;
  if (type === H264_SPS || type === H264_PPS) return true;
  if (type !== H264_STAP_A) return false;
  let offset = 1;
  let units = 0;
  while (offset + 2 < p.length) {
    const size = ((p[offset] as number) << 8) | (p[offset + 1] as number);
    const inner = (p[offset + 2] as number) & 0x1f;
    if (inner !== H264_SPS && inner !== H264_PPS) return false;
    units++;
    offset += 2 + size;
  }
  return units > 0;
}

/** Seconds between the NTP epoch (1900) and the Unix epoch (1970). */
const NTP_UNIX_OFFSET_S = 2_208_988_800;

/** A wall-clock time in milliseconds as a 64-bit NTP timestamp (RTCP sender reports). */
export function ntpTimestamp(ms: number): bigint {
  const seconds = Math.floor(ms / 1000);
  const fraction = Math.floor(((ms - seconds * 1000) / 1000) * 0x1_0000_0000);
  return (BigInt(seconds + NTP_UNIX_OFFSET_S) << 32n) | BigInt(fraction);
}

export const u16 = (n: number) => n & 0xffff;
export const u32 = (n: number) => n >>> 0;
