// The encoded frames the simulator sends: a clip shipped inside the program (clips/make-clips.sh made
// them), split into frames once at start. Nothing is encoded at run time.
import h264Clip from './clips/h264.h264' with { type: 'file' };
import vp8Clip from './clips/vp8.ivf' with { type: 'file' };

/** The video codecs the simulator sends. */
export type Codec = 'vp8' | 'h264';

/** One encoded frame: for VP8 the frame itself, for H.264 its NAL units (start codes and delimiter removed). */
export interface EncodedFrame {
  key: boolean;
  units: Uint8Array[];
  /** Bytes of media in the frame. */
  size: number;
}

/** A clip split into frames; its first frame is its only keyframe. */
export interface Clip {
  codec: Codec;
  frames: EncodedFrame[];
}

/** The frame rate the clips were encoded at (clips/make-clips.sh). */
export const CLIP_FPS = 30;

const IVF_HEADER = 32;
const IVF_FRAME_HEADER = 12;

/** The frames of an IVF file of VP8 (a VP8 keyframe has bit 0 of its first byte clear). */
export function parseIvf(bytes: Uint8Array): EncodedFrame[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const signature = new TextDecoder().decode(bytes.subarray(0, 4));
  if (signature !== 'DKIF' || bytes.length < IVF_HEADER) throw new Error('not an IVF file');
  const fourcc = new TextDecoder().decode(bytes.subarray(8, 12));
  if (fourcc !== 'VP80') throw new Error(`the IVF file holds ${fourcc}, not VP8`);
  const headerSize = view.getUint16(6, true) || IVF_HEADER;
  const frames: EncodedFrame[] = [];
  for (let at = headerSize; at + IVF_FRAME_HEADER <= bytes.length; ) {
    const size = view.getUint32(at, true);
    const data = bytes.subarray(at + IVF_FRAME_HEADER, at + IVF_FRAME_HEADER + size);
    if (data.length < size || size === 0) break;
    frames.push({ key: ((data[0] ?? 1) & 0x01) === 0, units: [data], size });
    at += IVF_FRAME_HEADER + size;
  }
  return frames;
}

const NAL_IDR = 5;
const NAL_AUD = 9;

/** The NAL units of an Annex B byte stream, without their start codes. */
export function splitAnnexB(bytes: Uint8Array): Uint8Array[] {
  const starts: { at: number; code: number }[] = [];
  for (let i = 0; i + 2 < bytes.length; i++) {
    if (bytes[i] === 0 && bytes[i + 1] === 0 && bytes[i + 2] === 1) {
      const long = i > 0 && bytes[i - 1] === 0;
      starts.push({ at: i + 3, code: long ? 4 : 3 });
      i += 2;
    }
  }
  return starts
    .map((s, n) => {
      const next = starts[n + 1];
      return bytes.subarray(s.at, next ? next.at - next.code : bytes.length);
    })
    .filter((u) => u.length > 0);
}

/** The access units of an H.264 byte stream in which every frame starts with an access unit delimiter. */
export function parseAnnexB(bytes: Uint8Array): EncodedFrame[] {
  const frames: EncodedFrame[] = [];
  let units: Uint8Array[] = [];
  const flush = () => {
    if (units.length === 0) return;
    frames.push({ key: units.some((u) => ((u[0] ?? 0) & 0x1f) === NAL_IDR), units, size: units.reduce((n, u) => n + u.length, 0) });
    units = [];
  };
  for (const unit of splitAnnexB(bytes)) {
    if (((unit[0] ?? 0) & 0x1f) === NAL_AUD) {
      flush();
      continue;
    }
    units.push(unit);
  }
  flush();
  return frames;
}

/** Reads the clip of `codec` from inside the program; its first frame must be a keyframe. */
export async function loadClip(codec: Codec): Promise<Clip> {
  const bytes = new Uint8Array(await Bun.file(codec === 'vp8' ? vp8Clip : h264Clip).arrayBuffer());
  const clip: Clip = { codec, frames: codec === 'vp8' ? parseIvf(bytes) : parseAnnexB(bytes) };
  if (!clip.frames[0]?.key) throw new Error(`the ${codec} clip does not start with a keyframe`);
  return clip;
}
