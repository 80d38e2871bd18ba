// The simulator's media without a network: the shipped clips, RTP payloads as RFC 7741 and RFC 6184
// describe them, and the encoder it imitates (keyframe interval, keyframe requests, padding), on a
// manual clock.
import { describe, expect, test } from 'bun:test';
import { type Clip, type Codec, loadClip } from '../../src/device/clip';
import { MAX_PAYLOAD, packetizeH264, packetizeVp8 } from '../../src/device/packetize';
import { type OutPacket, type VideoSettings, VideoSource } from '../../src/device/source';
import { ManualClock } from '../helpers';

const clips = { vp8: await loadClip('vp8'), h264: await loadClip('h264') } satisfies Record<Codec, Clip>;

describe('the clips', () => {
  for (const codec of ['vp8', 'h264'] as const) {
    test(`${codec}: 12 s at 30 fps, one keyframe, at the start`, () => {
      const { frames } = clips[codec];
      expect(frames.length).toBe(360);
      expect(frames.map((f, i) => (f.key ? i : -1)).filter((i) => i >= 0)).toEqual([0]);
    });
  }

  test('vp8: its keyframe is 320×240', () => {
    const key = clips.vp8.frames[0]?.units[0] as Uint8Array;
    // RFC 6386 §9.1: start code 9d 01 2a, then 14-bit width and height.
    expect([...key.subarray(3, 6)]).toEqual([0x9d, 0x01, 0x2a]);
    const view = new DataView(key.buffer, key.byteOffset + 6, 4);
    expect([view.getUint16(0, true) & 0x3fff, view.getUint16(2, true) & 0x3fff]).toEqual([320, 240]);
  });

  test('h264: constrained baseline; SPS and PPS come with the IDR', () => {
    const units = clips.h264.frames[0]?.units ?? [];
    expect(units.map((u) => (u[0] ?? 0) & 0x1f)).toContain(7);
    expect(units.map((u) => (u[0] ?? 0) & 0x1f)).toContain(8);
    const sps = units.find((u) => ((u[0] ?? 0) & 0x1f) === 7) as Uint8Array;
    // profile_idc 66 (baseline) with constraint_set1 (constrained): profile-level-id 42e0xx or 42c0xx.
    expect(sps[1]).toBe(0x42);
    expect((sps[2] ?? 0) & 0x40).toBe(0x40);
  });
});

describe('VP8 payloads', () => {
  test('a 4-byte descriptor with the PictureID; S only on the first; the frame put back together is the frame', () => {
    const frame = clips.vp8.frames[0]?.units[0] as Uint8Array;
    const payloads = packetizeVp8(frame, 0x1234);
    expect(payloads.length).toBe(Math.ceil(frame.length / (MAX_PAYLOAD - 4)));
    payloads.forEach((p, i) => {
      expect(p.length).toBeLessThanOrEqual(MAX_PAYLOAD);
      expect(p[0]).toBe(i === 0 ? 0x90 : 0x80);
      expect(p[1]).toBe(0x80);
      expect(((p[2] ?? 0) & 0x7f) * 256 + (p[3] ?? 0)).toBe(0x1234);
      expect((p[2] ?? 0) & 0x80).toBe(0x80);
    });
    expect(Buffer.concat(payloads.map((p) => p.subarray(4)))).toEqual(Buffer.from(frame));
  });
});

/** RFC 6184 depacketization: the NAL units the payloads carry. */
function depacketize(payloads: Uint8Array[]): Uint8Array[] {
  const units: Uint8Array[] = [];
  let fragments: Uint8Array[] = [];
  for (const p of payloads) {
    const type = (p[0] ?? 0) & 0x1f;
    if (type === 24) {
      for (let at = 1; at < p.length; ) {
        const size = ((p[at] ?? 0) << 8) | (p[at + 1] ?? 0);
        units.push(p.subarray(at + 2, at + 2 + size));
        at += 2 + size;
      }
    } else if (type === 28) {
      const fu = p[1] ?? 0;
      if (fu & 0x80) fragments = [Uint8Array.of(((p[0] ?? 0) & 0xe0) | (fu & 0x1f))];
      fragments.push(p.subarray(2));
      if (fu & 0x40) units.push(Buffer.concat(fragments));
    } else units.push(p);
  }
  return units;
}

describe('H.264 payloads (packetization-mode 1)', () => {
  test('the IDR access unit: SPS, PPS and SEI in one STAP-A, the slice in FU-As from S to E', () => {
    const { units } = clips.h264.frames[0] ?? { units: [] };
    const payloads = packetizeH264(units);
    for (const p of payloads) expect(p.length).toBeLessThanOrEqual(MAX_PAYLOAD);
    const [stap, ...rest] = payloads;
    expect((stap?.[0] ?? 0) & 0x1f).toBe(24);
    // NRI of the STAP-A is the highest of its units (SPS and PPS are 3).
    expect((stap?.[0] ?? 0) & 0x60).toBe(0x60);
    expect(rest.every((p) => ((p[0] ?? 0) & 0x1f) === 28 && ((p[1] ?? 0) & 0x1f) === 5)).toBe(true);
    expect((rest[0]?.[1] ?? 0) & 0xc0).toBe(0x80);
    expect((rest.at(-1)?.[1] ?? 0) & 0xc0).toBe(0x40);
    expect(depacketize(payloads).map((u) => Buffer.from(u))).toEqual(units.map((u) => Buffer.from(u)));
  });

  test('every access unit of the clip comes back whole; a small one is a single NAL unit packet', () => {
    for (const frame of clips.h264.frames) expect(depacketize(packetizeH264(frame.units)).map((u) => Buffer.from(u))).toEqual(frame.units.map((u) => Buffer.from(u)));
    const small = clips.h264.frames.find((f) => f.units.length === 1 && f.size <= MAX_PAYLOAD);
    expect(small).toBeDefined();
    expect(packetizeH264(small?.units ?? [])).toEqual(small?.units ?? []);
  });
});

function run(settings: Partial<VideoSettings>, codec: Codec = 'vp8') {
  const clock = new ManualClock();
  const source = new VideoSource(clips[codec], { fps: 30, bitrateKbps: 0, keyframeIntervalS: 1, ignorePli: false, ...settings }, clock);
  const frames: { packets: OutPacket[]; key: boolean }[] = [];
  source.subscribe((packets, key) => frames.push({ packets, key }));
  source.start();
  return { clock, source, frames, keys: () => frames.map((f, i) => (f.key ? i : -1)).filter((i) => i >= 0) };
}

describe('the source', () => {
  test("frames at the rate asked for, 90 kHz timestamps, the marker on each frame's last media packet", () => {
    const { clock, frames } = run({ fps: 25 });
    clock.advance(1000);
    expect(frames.length).toBe(25);
    frames.forEach(({ packets }, i) => {
      expect(new Set(packets.map((p) => p.timestamp))).toEqual(new Set([i * 3600]));
      expect(packets.map((p) => p.marker)).toEqual(packets.map((_, n) => n === packets.length - 1));
    });
  });

  test("a keyframe every interval: the loop of the clip's first interval × fps frames", () => {
    const { clock, keys } = run({ keyframeIntervalS: 2 });
    clock.advance(7000);
    expect(keys()).toEqual([0, 60, 120, 180]);
  });

  test('a keyframe request makes the next frame a keyframe, and the interval counts from it', () => {
    const { clock, source, keys } = run({ keyframeIntervalS: 2 });
    clock.advance(1000);
    source.requestKeyframe();
    clock.advance(3000);
    expect(keys()).toEqual([0, 30, 90]);
    expect(source.counters).toMatchObject({ keyframeRequests: 1, keyframesOnRequest: 1, keyframes: 3 });
  });

  test('--ignore-pli: requests change nothing', () => {
    const { clock, source, keys } = run({ keyframeIntervalS: 10, ignorePli: true });
    clock.advance(1000);
    source.requestKeyframe();
    source.requestKeyframe();
    clock.advance(10_000);
    expect(keys()).toEqual([0, 300]);
    expect(source.counters).toMatchObject({ keyframeRequests: 2, keyframesOnRequest: 0 });
  });

  test('padding brings the bytes up to the bitrate, in padding-only packets of 255 bytes', () => {
    const { clock, source, frames } = run({ bitrateKbps: 1500, keyframeIntervalS: 2 }, 'h264');
    clock.advance(10_000);
    const bytes = source.counters.mediaBytes + source.counters.paddingBytes;
    expect((bytes * 8) / 10_000).toBeGreaterThan(1500 * 0.97);
    expect((bytes * 8) / 10_000).toBeLessThan(1500 * 1.03);
    const padding = frames.flatMap((f) => f.packets.filter((p) => p.padding));
    expect(padding.length).toBeGreaterThan(0);
    for (const p of padding) {
      expect(p.payload.length).toBe(255);
      expect(p.payload[254]).toBe(255);
      expect(p.marker).toBe(false);
    }
  });

  test("a bitrate below the clip's sends the clip as it is; a keyframe interval longer than the clip is refused", () => {
    const { clock, source } = run({ bitrateKbps: 50 });
    clock.advance(2000);
    expect(source.counters.paddingBytes).toBe(0);
    expect(() => run({ keyframeIntervalS: 13 })).toThrow('the clip has 360');
  });
});
