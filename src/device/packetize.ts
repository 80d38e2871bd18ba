// RTP payloads of one encoded frame: VP8 with its payload descriptor (RFC 7741), H.264 in
// packetization-mode 1 (RFC 6184: single NAL unit, STAP-A, FU-A). The RTP header is the sender's.
import type { Codec, EncodedFrame } from './clip';

/** Bytes of payload in one RTP packet: with the headers and SRTP it stays well under a 1280-byte path MTU. */
export const MAX_PAYLOAD = 1100;

/**
 * VP8 payload descriptor (RFC 7741 §4.2) with a 15-bit PictureID: X=1, S on a frame's first packet,
 * partition index 0; then I=1 and the two PictureID bytes with M=1.
 */
export function packetizeVp8(frame: Uint8Array, pictureId: number, maxPayload = MAX_PAYLOAD): Uint8Array[] {
  const descriptor = 4;
  const room = maxPayload - descriptor;
  const payloads: Uint8Array[] = [];
  for (let at = 0; at < frame.length; at += room) {
    const chunk = frame.subarray(at, Math.min(frame.length, at + room));
    const payload = new Uint8Array(descriptor + chunk.length);
    payload[0] = 0x80 | (at === 0 ? 0x10 : 0);
    payload[1] = 0x80;
    payload[2] = 0x80 | ((pictureId >> 8) & 0x7f);
    payload[3] = pictureId & 0xff;
    payload.set(chunk, descriptor);
    payloads.push(payload);
  }
  return payloads;
}

const STAP_A = 24;
const FU_A = 28;

/**
 * One access unit in packetization-mode 1: NAL units that fit together go in one STAP-A (SPS, PPS and
 * SEI before an IDR, typically), a unit too large for one packet is cut into FU-As, any other is sent
 * alone.
 */
export function packetizeH264(units: Uint8Array[], maxPayload = MAX_PAYLOAD): Uint8Array[] {
  const payloads: Uint8Array[] = [];
  let group: Uint8Array[] = [];
  // A STAP-A: its header, then each unit after its 16-bit size.
  const groupSize = (units: Uint8Array[]) => 1 + units.reduce((n, u) => n + 2 + u.length, 0);
  const flush = () => {
    if (group.length === 1) payloads.push(group[0] as Uint8Array);
    else if (group.length > 1) {
      const stap = new Uint8Array(groupSize(group));
      // F is the OR of the units' F bits, NRI their highest (RFC 6184 §5.7.1).
      let f = 0;
      let nri = 0;
      let at = 1;
      for (const unit of group) {
        const header = unit[0] ?? 0;
        f |= header & 0x80;
        nri = Math.max(nri, header & 0x60);
        stap[at] = unit.length >> 8;
        stap[at + 1] = unit.length & 0xff;
        stap.set(unit, at + 2);
        at += 2 + unit.length;
      }
      stap[0] = f | nri | STAP_A;
      payloads.push(stap);
    }
    group = [];
  };
  for (const unit of units) {
    if (unit.length > maxPayload) {
      flush();
      payloads.push(...fragment(unit, maxPayload));
      continue;
    }
    if (groupSize([...group, unit]) > maxPayload) flush();
    group.push(unit);
  }
  flush();
  return payloads;
}

/** FU-A (RFC 6184 §5.8): the unit's header becomes the indicator (type 28) and the FU header (S, E, type). */
function fragment(unit: Uint8Array, maxPayload: number): Uint8Array[] {
  const header = unit[0] ?? 0;
  const indicator = (header & 0xe0) | FU_A;
  const type = header & 0x1f;
  const body = unit.subarray(1);
  const room = maxPayload - 2;
  const payloads: Uint8Array[] = [];
  for (let at = 0; at < body.length; at += room) {
    const chunk = body.subarray(at, Math.min(body.length, at + room));
    const payload = new Uint8Array(2 + chunk.length);
    payload[0] = indicator;
    payload[1] = (at === 0 ? 0x80 : 0) | (at + room >= body.length ? 0x40 : 0) | type;
    payload.set(chunk, 2);
    payloads.push(payload);
  }
  return payloads;
}

/** The RTP payloads of `frame`; the last one carries the marker bit. */
export function packetize(codec: Codec, frame: EncodedFrame, pictureId: number): Uint8Array[] {
  if (codec === 'vp8') return packetizeVp8(frame.units[0] ?? new Uint8Array(), pictureId);
  return packetizeH264(frame.units);
}
