// One viewer's copy of a publisher track, against a recording output and a manual clock.
import { describe, expect, test } from 'bun:test';
import { RtpHeader, RtpPacket } from 'werift';
import { type NegotiatedCodec, type RtpOutput, SourceTrack, TrackForwarder } from '../../src/relay/forwarder';
import { startsKeyframe } from '../../src/relay/rtp';
import { ManualClock } from '../helpers';

const VP8: NegotiatedCodec = { payloadType: 96, mimeType: 'video/VP8', clockRate: 90_000 };
const H264: NegotiatedCodec = { payloadType: 102, mimeType: 'video/H264', clockRate: 90_000, parameters: 'packetization-mode=1;profile-level-id=42e01f' };
/** VP8 payload descriptors: S=1, partition 0, then the frame header's P bit (0: keyframe). */
const KEY = Buffer.from([0x10, 0x00, 0x00]);
const DELTA = Buffer.from([0x10, 0x01, 0x00]);

function recorder() {
  const sent: { seq: number; ts: number; pt: number; ssrc: number; payload: Buffer }[] = [];
  const output: RtpOutput = {
    ssrc: 4242,
    ready: true,
    send: async (header, payload) => {
      sent.push({ seq: header.sequenceNumber, ts: header.timestamp, pt: header.payloadType, ssrc: header.ssrc, payload });
    },
    sendRtcp: () => {},
  };
  return { sent, output };
}

const packet = (seq: number, ts: number, payload: Buffer, payloadType = 96) =>
  new RtpPacket(new RtpHeader({ sequenceNumber: seq, timestamp: ts, payloadType, ssrc: 7, marker: true }), payload);

describe('TrackForwarder', () => {
  test('video starts at a keyframe, asking for one meanwhile, in the viewer SSRC and payload type', () => {
    const clock = new ManualClock();
    const { sent, output } = recorder();
    let asked = 0;
    const forwarder = new TrackForwarder('video', output, clock, () => asked++);
    forwarder.setViewerCodecs([{ ...VP8, payloadType: 120 }]);
    const source = new SourceTrack('video', [VP8], 90_000);
    forwarder.forward(packet(100, 9000, DELTA), source, clock.now());
    expect(sent).toEqual([]);
    expect(asked).toBe(1);
    forwarder.forward(packet(101, 12000, KEY), source, clock.now());
    forwarder.forward(packet(102, 15000, DELTA), source, clock.now());
    expect(sent.map((p) => [p.ssrc, p.pt])).toEqual([
      [4242, 120],
      [4242, 120],
    ]);
    expect(((sent[1]?.seq ?? 0) - (sent[0]?.seq ?? 0)) & 0xffff).toBe(1);
    expect(((sent[1]?.ts ?? 0) - (sent[0]?.ts ?? 0)) >>> 0).toBe(3000);
  });

  test('a new source continues the sequence, its timestamps advanced by the time that passed', () => {
    const clock = new ManualClock();
    const { sent, output } = recorder();
    const forwarder = new TrackForwarder('video', output, clock, () => {});
    forwarder.setViewerCodecs([VP8]);
    const first = new SourceTrack('video', [VP8], 90_000);
    forwarder.forward(packet(5000, 1_000_000, KEY), first, clock.now());
    clock.advance(2000);
    const second = new SourceTrack('video', [VP8], 90_000);
    forwarder.forward(packet(17, 55, DELTA), second, clock.now()); // not a keyframe: skipped
    forwarder.forward(packet(18, 3055, KEY), second, clock.now());
    const [a, b] = sent;
    expect(sent).toHaveLength(2);
    expect(((b?.seq ?? 0) - (a?.seq ?? 0)) & 0xffff).toBe(1);
    expect(((b?.ts ?? 0) - (a?.ts ?? 0)) >>> 0).toBe(2000 * 90);
  });

  test('NACKs are answered from the shared history, within a budget', () => {
    const clock = new ManualClock();
    const { sent, output } = recorder();
    const forwarder = new TrackForwarder('video', output, clock, () => {});
    forwarder.setViewerCodecs([VP8]);
    const source = new SourceTrack('video', [VP8], 90_000);
    for (let i = 0; i < 200; i++) {
      const p = packet(i, i * 3000, i === 0 ? KEY : DELTA);
      source.remember(p, clock.now());
      forwarder.forward(p, source, clock.now());
    }
    const lost = (sent[10]?.seq ?? 0) as number;
    forwarder.retransmit([lost, (lost + 5) & 0xffff]);
    expect(sent.slice(200).map((p) => p.seq)).toEqual([lost, (lost + 5) & 0xffff]);
    expect(sent[200]?.ts).toBe(sent[10]?.ts as number);
    // A viewer asking for everything again and again gets its burst, then nothing until time passes.
    const all = sent.slice(0, 200).map((p) => p.seq);
    forwarder.retransmit(all);
    forwarder.retransmit(all);
    expect(forwarder.counters.retransmitted).toBe(128);
    clock.advance(1000);
    forwarder.retransmit(all.slice(0, 10));
    expect(forwarder.counters.retransmitted).toBe(138);
  });

  test('H.264 goes to the viewer payload type of the same packetization mode; a codec the viewer lacks is not sent', () => {
    const clock = new ManualClock();
    const { sent, output } = recorder();
    const missing: string[] = [];
    const forwarder = new TrackForwarder(
      'video',
      output,
      clock,
      () => {},
      (mime) => missing.push(mime),
    );
    forwarder.setViewerCodecs([
      VP8,
      { ...H264, payloadType: 104, parameters: 'packetization-mode=0;profile-level-id=42e01f' },
      { ...H264, payloadType: 106, parameters: 'packetization-mode=1;profile-level-id=640c1f' },
    ]);
    const source = new SourceTrack('video', [H264, { payloadType: 45, mimeType: 'video/AV1', clockRate: 90_000 }], 90_000);
    forwarder.forward(packet(1, 0, Buffer.from([0x65, 0x88]), 102), source, clock.now()); // an IDR slice
    expect(sent.map((p) => p.pt)).toEqual([106]);
    expect(missing).toEqual(['video/AV1']);
  });
});

describe('keyframes', () => {
  test('VP8 and H.264 packets that start a keyframe, and ones that do not', () => {
    expect(startsKeyframe('vp8', KEY)).toBe(true);
    expect(startsKeyframe('vp8', DELTA)).toBe(false);
    // Extended descriptor with a 15-bit picture id, then a keyframe header.
    expect(startsKeyframe('vp8', Buffer.from([0x90, 0x80, 0x81, 0x23, 0x00]))).toBe(true);
    expect(startsKeyframe('vp8', Buffer.from([0x00, 0x00]))).toBe(false); // not a partition start
    expect(startsKeyframe('h264', Buffer.from([0x67, 0x42]))).toBe(true); // SPS
    expect(startsKeyframe('h264', Buffer.from([0x41, 0x9a]))).toBe(false); // a P slice
    expect(startsKeyframe('h264', Buffer.from([0x7c, 0x85, 0x88]))).toBe(true); // FU-A start of an IDR
    expect(startsKeyframe('h264', Buffer.from([0x7c, 0x05, 0x88]))).toBe(false); // FU-A middle
    expect(startsKeyframe('h264', Buffer.from([0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce]))).toBe(true); // STAP-A with an SPS
    expect(startsKeyframe('opus', Buffer.from([1]))).toBe(true);
  });
});
