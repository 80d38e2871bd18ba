// The keyframe cache: what a viewer joining mid-stream is sent, from packets in to packets out.
import { describe, expect, test } from 'bun:test';
import { RtpHeader, RtpPacket } from 'werift';
import { MAX_IN_FLIGHT, type NegotiatedCodec, REPLAY_BURST_BYTES, REPLAY_BYTES_PER_S, type RtpOutput, SourceTrack, TrackForwarder } from '../../src/relay/forwarder';
import { KeyframeCache, type KeyframeCacheLimits, KeyframeCachePool } from '../../src/relay/keyframe-cache';
import { onlyParameterSets } from '../../src/relay/rtp';
import { ManualClock } from '../helpers';

const VP8: NegotiatedCodec = { payloadType: 96, mimeType: 'video/VP8', clockRate: 90_000 };
const H264: NegotiatedCodec = { payloadType: 102, mimeType: 'video/H264', clockRate: 90_000, parameters: 'packetization-mode=1;profile-level-id=42e01f' };
const LIMITS = { maxBytes: 100_000, maxAgeMs: 12_000 };

/** VP8: S=1, partition 0, then the frame header's P bit (0: keyframe); the rest is the frame's bytes. */
const vp8 = (key: boolean, size = 3) => Buffer.concat([Buffer.from([0x10, key ? 0x00 : 0x01]), Buffer.alloc(size - 2)]);
const VP8_CONTINUATION = Buffer.from([0x00, 0x55, 0x55]); // S=0: the middle of a frame

/** H.264 payloads (RFC 6184). */
const SPS = Buffer.from([0x67, 0x42, 0xe0, 0x1f]);
const PPS = Buffer.from([0x68, 0xce, 0x3c, 0x80]);
const STAP_A_PARAMETERS = Buffer.from([0x78, 0x00, 0x04, ...SPS, 0x00, 0x04, ...PPS]);
const IDR = Buffer.from([0x65, 0x88, 0x84]);
const FU_A_IDR_START = Buffer.from([0x7c, 0x85, 0x88]);
const FU_A_IDR_MIDDLE = Buffer.from([0x7c, 0x05, 0x11]);
const FU_A_IDR_END = Buffer.from([0x7c, 0x45, 0x22]);
const P_SLICE = Buffer.from([0x41, 0x9a, 0x02]);
const FU_A_P_START = Buffer.from([0x5c, 0x81, 0x9a]);

const packet = (seq: number, ts: number, payload: Buffer, payloadType = 96) =>
  new RtpPacket(new RtpHeader({ sequenceNumber: seq & 0xffff, timestamp: ts >>> 0, payloadType, ssrc: 7, marker: true }), payload);

interface Sent {
  seq: number;
  ts: number;
  payload: Buffer;
}

/** A viewer's output; with `hold`, sends stay in flight until `release()`. */
function recorder(hold = false) {
  const sent: Sent[] = [];
  const pending: (() => void)[] = [];
  const output: RtpOutput = {
    ssrc: 4242,
    ready: true,
    send: (header, payload) => {
      sent.push({ seq: header.sequenceNumber, ts: header.timestamp, payload });
      return hold ? new Promise<void>((resolve) => pending.push(resolve)) : Promise.resolve();
    },
    sendRtcp: () => {},
  };
  const release = async () => {
    for (const resolve of pending.splice(0)) resolve();
    await Promise.resolve();
    await Promise.resolve();
  };
  return { sent, output, release };
}

/** The source and a feed that remembers each packet and hands it to every forwarder, as the router does. */
function publisher(codec: NegotiatedCodec, clock: ManualClock, limits: KeyframeCacheLimits = LIMITS) {
  const source = new SourceTrack('video', [codec], 90_000, limits);
  const forwarders: TrackForwarder[] = [];
  const feed = (p: RtpPacket) => {
    source.remember(p, clock.now());
    for (const f of forwarders) f.forward(p, source, clock.now());
  };
  return { source, forwarders, feed };
}

function viewer(clock: ManualClock, codec: NegotiatedCodec, hold = false) {
  const out = recorder(hold);
  let asked = 0;
  const forwarder = new TrackForwarder('video', out.output, clock, () => asked++);
  forwarder.setViewerCodecs([codec]);
  return { ...out, forwarder, asked: () => asked };
}

/** Each sent packet's sequence number follows the one before. */
function contiguous(sent: readonly Sent[]): boolean {
  return sent.every((p, i) => i === 0 || ((p.seq - (sent[i - 1] as Sent).seq) & 0xffff) === 1);
}

describe('a viewer joining mid-GOP', () => {
  test('VP8: is sent the group of pictures from its keyframe at once, in its own contiguous numbers, then the live packets', () => {
    const clock = new ManualClock();
    const { source, forwarders, feed } = publisher(VP8, clock);
    let seq = 65_500; // the sequence numbers wrap inside the group
    feed(packet(seq++, 0, vp8(false))); // before any keyframe: never cached
    for (let frame = 0; frame < 20; frame++) {
      feed(packet(seq++, 3000 * frame, vp8(frame === 5)));
      feed(packet(seq++, 3000 * frame, VP8_CONTINUATION));
      clock.advance(33);
    }
    const v = viewer(clock, VP8);
    expect(v.forwarder.prime(source, clock.now())).toBe(true);
    forwarders.push(v.forwarder);
    // Frames 5 to 19, two packets each, the first one the keyframe.
    expect(v.sent).toHaveLength(30);
    expect(v.sent[0]?.payload).toEqual(vp8(true));
    expect(contiguous(v.sent)).toBe(true);
    expect(((v.sent[2]?.ts ?? 0) - (v.sent[0]?.ts ?? 0)) >>> 0).toBe(3000);
    expect(v.asked()).toBe(0);
    feed(packet(seq++, 3000 * 20, vp8(false)));
    expect(v.sent).toHaveLength(31);
    expect(contiguous(v.sent)).toBe(true);
    expect(((v.sent[30]?.ts ?? 0) - (v.sent[0]?.ts ?? 0)) >>> 0).toBe(3000 * 15);
  });

  test('a viewer whose first live packet is mid-GOP is primed from the cache by it', () => {
    const clock = new ManualClock();
    const { forwarders, feed } = publisher(VP8, clock);
    feed(packet(1, 0, vp8(true)));
    feed(packet(2, 3000, vp8(false)));
    const v = viewer(clock, VP8);
    forwarders.push(v.forwarder);
    feed(packet(3, 6000, vp8(false)));
    expect(v.sent.map((p) => p.payload)).toEqual([vp8(true), vp8(false), vp8(false)]);
    expect(contiguous(v.sent)).toBe(true);
    expect(v.asked()).toBe(0);
  });

  test('H.264: the parameter sets before the IDR open the group; FU-A fragments and a second slice of the IDR stay in it', () => {
    const clock = new ManualClock();
    const { source, feed } = publisher(H264, clock);
    let seq = 100;
    feed(packet(seq++, 0, SPS, 102));
    feed(packet(seq++, 0, PPS, 102));
    feed(packet(seq++, 0, IDR, 102));
    feed(packet(seq++, 3000, P_SLICE, 102));
    // The next group: SPS and PPS aggregated, an IDR in fragments, and a second IDR slice of the same picture.
    feed(packet(seq++, 6000, STAP_A_PARAMETERS, 102));
    feed(packet(seq++, 6000, FU_A_IDR_START, 102));
    feed(packet(seq++, 6000, FU_A_IDR_MIDDLE, 102));
    feed(packet(seq++, 6000, FU_A_IDR_END, 102));
    feed(packet(seq++, 6000, FU_A_IDR_START, 102));
    feed(packet(seq++, 6000, FU_A_IDR_END, 102));
    feed(packet(seq++, 9000, FU_A_P_START, 102));
    const v = viewer(clock, H264);
    expect(v.forwarder.prime(source, clock.now())).toBe(true);
    expect(v.sent.map((p) => p.payload)).toEqual([STAP_A_PARAMETERS, FU_A_IDR_START, FU_A_IDR_MIDDLE, FU_A_IDR_END, FU_A_IDR_START, FU_A_IDR_END, FU_A_P_START]);
    expect(contiguous(v.sent)).toBe(true);
  });

  test('H.264: a PPS sent alone just before the IDR moves into its group', () => {
    const cache = new KeyframeCache(LIMITS);
    cache.add(packet(1, 0, IDR, 102), 'h264', 0);
    cache.add(packet(2, 3000, P_SLICE, 102), 'h264', 33);
    cache.add(packet(3, 6000, PPS, 102), 'h264', 66);
    cache.add(packet(4, 6000, IDR, 102), 'h264', 66);
    expect(cache.packets(70)?.map((p) => p.header.sequenceNumber)).toEqual([3, 4]);
    expect(cache.size).toBe(PPS.length + IDR.length);
  });

  test('the cache is bounded in bytes: a group larger than the bound is not kept, and the viewer waits for a keyframe', () => {
    const clock = new ManualClock();
    const { source, forwarders, feed } = publisher(VP8, clock, { maxBytes: 10_000, maxAgeMs: 12_000 });
    feed(packet(1, 0, vp8(true, 1000)));
    for (let i = 2; i <= 9; i++) feed(packet(i, i * 3000, vp8(false, 1000)));
    expect(source.cache?.size).toBe(9000);
    feed(packet(10, 30_000, vp8(false, 1000)));
    expect(source.cache?.size).toBe(10_000);
    feed(packet(11, 33_000, vp8(false, 1000))); // one byte over: dropped, until the next keyframe
    expect(source.cache?.size).toBe(0);
    feed(packet(12, 36_000, vp8(false, 1000)));
    expect(source.cache?.size).toBe(0);
    const v = viewer(clock, VP8);
    expect(v.forwarder.prime(source, clock.now())).toBe(false);
    forwarders.push(v.forwarder);
    feed(packet(13, 39_000, vp8(false, 1000)));
    expect(v.sent).toEqual([]);
    expect(v.asked()).toBe(1);
    feed(packet(14, 42_000, vp8(true, 1000)));
    expect(v.sent).toHaveLength(1);
    expect(source.cache?.size).toBe(1000);
  });

  test('the cache is bounded in time: a keyframe older than RELAY_KEYFRAME_CACHE_MS is not replayed', () => {
    const clock = new ManualClock();
    const { source, feed } = publisher(VP8, clock, { maxBytes: 100_000, maxAgeMs: 5000 });
    feed(packet(1, 0, vp8(true)));
    clock.advance(5000);
    feed(packet(2, 450_000, vp8(false)));
    expect(viewer(clock, VP8).forwarder.prime(source, clock.now())).toBe(true);
    clock.advance(1);
    expect(viewer(clock, VP8).forwarder.prime(source, clock.now())).toBe(false);
    expect(source.cache?.size).toBe(0);
  });

  test('the caches are bounded together (RELAY_KEYFRAME_CACHE_TOTAL_BYTES): over it the largest group goes, its viewers wait for a keyframe', () => {
    const clock = new ManualClock();
    const pool = new KeyframeCachePool(10_000);
    const limits = { maxBytes: 100_000, maxAgeMs: 12_000, pool };
    const [a, b, c] = [publisher(VP8, clock, limits), publisher(VP8, clock, limits), publisher(VP8, clock, limits)];
    const group = (track: typeof a, first: number, packets: number) => {
      for (let i = 0; i < packets; i++) track.feed(packet(first + i, (first + i) * 3000, vp8(i === 0, 1000)));
    };
    group(a, 1, 5);
    group(b, 101, 3);
    group(c, 201, 2);
    expect(pool.bytes).toBe(10_000);
    expect(pool.evictions).toBe(0);
    c.feed(packet(203, 203 * 3000, vp8(false, 1000))); // one packet over: a, the largest, is dropped
    expect(pool.evictions).toBe(1);
    expect(a.source.cache?.size).toBe(0);
    expect(b.source.cache?.size).toBe(3000);
    expect(c.source.cache?.size).toBe(3000);
    expect(pool.bytes).toBe(6000);
    const late = viewer(clock, VP8);
    expect(late.forwarder.prime(a.source, clock.now())).toBe(false);
    a.forwarders.push(late.forwarder);
    a.feed(packet(6, 6 * 3000, vp8(false, 1000))); // mid-group: not kept, the viewer asks for a keyframe
    expect(late.sent).toEqual([]);
    expect(late.asked()).toBe(1);
    expect(viewer(clock, VP8).forwarder.prime(b.source, clock.now())).toBe(true);
    // A track that ends gives its bytes back.
    b.source.close();
    c.source.close();
    expect(pool.bytes).toBe(0);
    a.feed(packet(7, 7 * 3000, vp8(true, 1000)));
    expect(pool.bytes).toBe(1000);
    expect(late.sent).toHaveLength(1);
  });

  test('a group over its own bound, or too old, gives its bytes back to the pool', () => {
    const clock = new ManualClock();
    const pool = new KeyframeCachePool(1_000_000);
    const { feed, source } = publisher(VP8, clock, { maxBytes: 2500, maxAgeMs: 5000, pool });
    feed(packet(1, 0, vp8(true, 1000)));
    feed(packet(2, 3000, vp8(false, 1000)));
    expect(pool.bytes).toBe(2000);
    feed(packet(3, 6000, vp8(false, 1000)));
    expect(pool.bytes).toBe(0);
    feed(packet(4, 9000, vp8(true, 1000)));
    expect(pool.bytes).toBe(1000);
    clock.advance(5001);
    expect(source.cache?.packets(clock.now())).toBeUndefined();
    expect(pool.bytes).toBe(0);
    expect(pool.evictions).toBe(0);
  });

  test('with the cache off (0 bytes) nothing is kept and the viewer waits for the publisher', () => {
    const clock = new ManualClock();
    const { source, forwarders, feed } = publisher(VP8, clock, { maxBytes: 0, maxAgeMs: 12_000 });
    expect(source.cache).toBeUndefined();
    feed(packet(1, 0, vp8(true)));
    const v = viewer(clock, VP8);
    expect(v.forwarder.prime(source, clock.now())).toBe(false);
    forwarders.push(v.forwarder);
    feed(packet(2, 3000, vp8(false)));
    expect(v.sent).toEqual([]);
    expect(v.asked()).toBe(1);
  });

  test('a long group goes out MAX_IN_FLIGHT packets at a time, live packets after it, in order', async () => {
    const clock = new ManualClock();
    const { source, forwarders, feed } = publisher(VP8, clock, { maxBytes: 10_000_000, maxAgeMs: 12_000 });
    const total = MAX_IN_FLIGHT * 2 + 10;
    for (let i = 0; i < total; i++) feed(packet(i, i * 3000, vp8(i === 0)));
    const v = viewer(clock, VP8, true);
    v.forwarder.prime(source, clock.now());
    forwarders.push(v.forwarder);
    expect(v.sent).toHaveLength(MAX_IN_FLIGHT);
    feed(packet(total, total * 3000, vp8(false))); // arrives while the replay is under way
    expect(v.sent).toHaveLength(MAX_IN_FLIGHT);
    await v.release();
    expect(v.sent).toHaveLength(MAX_IN_FLIGHT * 2);
    await v.release();
    expect(v.sent).toHaveLength(total + 1);
    expect(v.forwarder.replaying).toBe(false);
    expect(contiguous(v.sent)).toBe(true);
    expect(v.forwarder.counters.dropped).toBe(0);
    await v.release();
    feed(packet(total + 1, (total + 1) * 3000, vp8(false)));
    expect(v.sent).toHaveLength(total + 2);
    expect(contiguous(v.sent)).toBe(true);
  });

  test('a long group is paced: a burst at once, the rest at REPLAY_BYTES_PER_S, and it ends where the live stream is', async () => {
    const clock = new ManualClock();
    const { source, forwarders, feed } = publisher(VP8, clock, { maxBytes: 10_000_000, maxAgeMs: 12_000 });
    const total = 400;
    for (let i = 0; i < total; i++) feed(packet(i, i * 3000, vp8(i === 0, 1000)));
    const v = viewer(clock, VP8);
    v.forwarder.prime(source, clock.now());
    forwarders.push(v.forwarder);
    const burst = Math.ceil(REPLAY_BURST_BYTES / 1000);
    expect(v.sent).toHaveLength(burst);
    await v.release();
    clock.advance(10);
    const step = Math.ceil((REPLAY_BYTES_PER_S / 100 - (burst * 1000 - REPLAY_BURST_BYTES)) / 1000);
    expect(v.sent).toHaveLength(burst + step);
    feed(packet(total, total * 3000, vp8(false, 1000))); // live, while the replay is under way: it waits its turn
    expect(v.sent).toHaveLength(burst + step);
    for (let i = 0; i < 20 && v.forwarder.replaying; i++) {
      await v.release();
      clock.advance(10);
    }
    expect(v.forwarder.replaying).toBe(false);
    expect(v.sent).toHaveLength(total + 1);
    expect(contiguous(v.sent)).toBe(true);
  });

  test('a keyframe arriving during a replay: the replay goes on into the new group, without a gap', async () => {
    const clock = new ManualClock();
    const { source, forwarders, feed } = publisher(VP8, clock, { maxBytes: 10_000_000, maxAgeMs: 12_000 });
    const total = MAX_IN_FLIGHT + 20;
    for (let i = 0; i < total; i++) feed(packet(i, i * 3000, vp8(i === 0)));
    const v = viewer(clock, VP8, true);
    v.forwarder.prime(source, clock.now());
    forwarders.push(v.forwarder);
    feed(packet(total, total * 3000, vp8(true)));
    feed(packet(total + 1, (total + 1) * 3000, vp8(false)));
    await v.release();
    await v.release();
    expect(v.sent).toHaveLength(total + 2);
    expect(contiguous(v.sent)).toBe(true);
    expect(v.sent[total]?.payload).toEqual(vp8(true));
  });

  test('NACKs of replayed packets are answered in the viewer numbers, from the group beyond the history', async () => {
    const clock = new ManualClock();
    const { source, feed } = publisher(VP8, clock, { maxBytes: 10_000_000, maxAgeMs: 12_000 });
    for (let i = 0; i < 400; i++) feed(packet(1000 + i, i * 3000, vp8(i === 0, 3 + (i % 7))));
    const v = viewer(clock, VP8);
    v.forwarder.prime(source, clock.now());
    await new Promise((resolve) => setImmediate(resolve)); // the sends settle, the replay goes on
    expect(v.sent).toHaveLength(400);
    const first = v.sent[0] as Sent;
    const late = v.sent[399] as Sent;
    v.forwarder.retransmit([first.seq, late.seq]);
    expect(v.sent.slice(400)).toEqual([first, late]);
    expect(v.forwarder.counters.retransmitted).toBe(2);
  });
});

describe('H.264 parameter sets', () => {
  test('SPS, PPS, and STAP-A of only those; not an IDR, a slice, or a STAP-A with an IDR', () => {
    expect(onlyParameterSets(SPS)).toBe(true);
    expect(onlyParameterSets(PPS)).toBe(true);
    expect(onlyParameterSets(STAP_A_PARAMETERS)).toBe(true);
    expect(onlyParameterSets(IDR)).toBe(false);
    expect(onlyParameterSets(P_SLICE)).toBe(false);
    expect(onlyParameterSets(Buffer.from([0x78, 0x00, 0x04, ...SPS, 0x00, 0x03, ...IDR]))).toBe(false);
    expect(onlyParameterSets(Buffer.from([0x78]))).toBe(false);
  });
});
