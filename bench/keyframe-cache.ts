// What the relay's keyframe cache costs per published track, and per viewer that joins:
//
//   bun bench/keyframe-cache.ts
//
// A synthetic 1.5 Mbit/s VP8 track (30 frames a second, packets of at most 1100 bytes, as
// bench/relay-peers.ts sends) with a keyframe every 2 s and every 10 s, measured when its cache is
// fullest, just before the next keyframe: the payload it holds, and the heap it takes beyond the
// track's NACK history. Then joins: the whole group replayed to a viewer through SRTP encryption
// and a UDP send on loopback, as the relay sends every packet, paced on a manual clock; the CPU of the
// replay per join. One process, one core; the figures move with the machine's load.
import { createSocket } from 'node:dgram';
import { RtpHeader, RtpPacket, SrtpSession } from 'werift';
import { type RtpOutput, SourceTrack, TrackForwarder } from '../src/relay/forwarder';
import { ManualClock } from '../test/helpers';

const VP8 = { payloadType: 96, mimeType: 'video/VP8', clockRate: 90_000 };
const KBPS = 1500;
const JOINS = 20;
const frameBytes = Math.round((KBPS * 1000) / 8 / 30);
const perFrame = Math.ceil(frameBytes / 1100);
const body = Buffer.alloc(Math.ceil(frameBytes / perFrame), 0x5a);

const bound = async () => {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return socket;
};
const sink = await bound();
const socket = await bound();
const key = Buffer.alloc(16, 1);
const salt = Buffer.alloc(14, 2);
// AES-CM-128 with HMAC-SHA1-80 (profile 1), what Chromium negotiates with werift.
const srtp = new SrtpSession({ keys: { localMasterKey: key, localMasterSalt: salt, remoteMasterKey: key, remoteMasterSalt: salt }, profile: 1 });

/** One group of pictures, keyframe first, up to the frame before the next keyframe. */
function publish(source: SourceTrack, clock: ManualClock, keyframeIntervalS: number): number {
  let seq = 0;
  for (let frame = 0; frame < keyframeIntervalS * 30 - 1; frame++) {
    for (let i = 0; i < perFrame; i++) {
      const descriptor = Buffer.from([i === 0 ? 0x10 : 0x00, frame === 0 ? 0x00 : 0x01, 0x00]);
      const header = new RtpHeader({ payloadType: 96, sequenceNumber: seq++ & 0xffff, timestamp: frame * 3000, ssrc: 1, marker: i === perFrame - 1 });
      source.remember(new RtpPacket(header, Buffer.concat([descriptor, body])), clock.now());
    }
    clock.advance(33);
  }
  return seq;
}

const heap = () => {
  Bun.gc(true);
  return process.memoryUsage().heapUsed;
};

for (const keyframeIntervalS of [2, 10]) {
  const clock = new ManualClock();
  const start = heap();
  const uncached = new SourceTrack('video', [VP8], 90_000, { maxBytes: 0, maxAgeMs: 12_000 });
  publish(uncached, clock, keyframeIntervalS);
  const history = heap() - start;
  // The joins below replay one after another on the manual clock: the age bound is not what is measured.
  const cached = new SourceTrack('video', [VP8], 90_000, { maxBytes: 2_500_000, maxAgeMs: Number.MAX_SAFE_INTEGER });
  const packets = publish(cached, clock, keyframeIntervalS);
  const cacheHeap = heap() - start - history;
  let cpuUs = 0;
  let sent = 0;
  for (let join = 0; join < JOINS; join++) {
    const output: RtpOutput = {
      ssrc: 99,
      ready: true,
      send: (header, payload) => {
        sent++;
        const data = srtp.encrypt(payload, header);
        return new Promise((resolve) => socket.send(data, sink.address().port, '127.0.0.1', resolve));
      },
      sendRtcp: () => {},
    };
    const forwarder = new TrackForwarder('video', output, clock, () => {});
    forwarder.setViewerCodecs([VP8]);
    const cpu = process.cpuUsage();
    forwarder.prime(cached, clock.now());
    while (forwarder.replaying) {
      await new Promise((resolve) => setImmediate(resolve));
      clock.advance(10);
    }
    const used = process.cpuUsage(cpu);
    cpuUs += used.user + used.system;
  }
  console.log(
    `1.5 Mbit/s, a keyframe every ${keyframeIntervalS} s: ${packets} packets in the group; the cache holds ${((cached.cache?.size ?? 0) / 1e6).toFixed(2)} MB of payload, ` +
      `${(cacheHeap / 1e6).toFixed(2)} MB of heap; a join replays it in ${(cpuUs / JOINS / 1000).toFixed(1)} ms of CPU (${(cpuUs / sent).toFixed(1)} µs a packet, SRTP and UDP send included)`,
  );
}
sink.close();
socket.close();
