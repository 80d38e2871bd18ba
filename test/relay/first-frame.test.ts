// A viewer joining a live relay session mid-GOP, against a publisher that ignores keyframe requests and
// sends a keyframe every 10 s, as cheap dashcam encoders do: werift peers on both ends, a real server.
import { afterAll, expect, test } from 'bun:test';
import type { RtpPacket } from 'werift';
import { type BenchPeer, benchPublisher, relayPeer } from '../../bench/relay-peers';
import { startsKeyframe } from '../../src/relay/rtp';
import { type Running, startServer, until } from '../helpers';
import { scrape } from '../metrics/scrape';

const KEYFRAME_INTERVAL_S = 10;
const KBPS = 1500;

const running: Running[] = [];
const peers: BenchPeer[] = [];
afterAll(async () => {
  for (const peer of peers.splice(0)) await peer.close().catch(() => undefined);
  for (const server of running.splice(0)) await server.stop();
});

/** A viewer that keeps when its connection came up and the first video packets it decrypted. */
async function firstPackets(url: string, sessionId: string, peerId: string, ownOffer = false) {
  const timing = { connectedAt: 0 };
  const packets: { at: number; packet: RtpPacket }[] = [];
  const peer = await relayPeer(
    url,
    sessionId,
    peerId,
    '',
    () => {},
    (pc) => {
      pc.connectionStateChange.subscribe((state) => {
        if (state === 'connected') timing.connectedAt ||= performance.now();
      });
      pc.onTrack.subscribe((track) => {
        if (track.kind !== 'video') return;
        track.onReceiveRtp.subscribe((packet) => {
          if (packets.length < 1000) packets.push({ at: performance.now(), packet });
        });
      });
    },
    undefined,
    ownOffer,
  );
  peers.push(peer);
  return { timing, packets };
}

/** A server and a publisher that has sent its first keyframe and about a second of frames after it. */
async function liveSession(config: Parameters<typeof startServer>[0]) {
  const server = startServer({ relayHostIps: ['127.0.0.1'], ...config });
  running.push(server);
  const publisher = await benchPublisher(server.url, 'cam', KBPS, { keyframeIntervalS: KEYFRAME_INTERVAL_S, honoursKeyframeRequests: false });
  peers.push(publisher);
  await until(() => publisher.packets() >= perSecond, 'the publisher to be a second into its group of pictures', 15_000);
  return { server, publisher };
}

/** As the publisher cuts its frames: 30 a second, in packets of at most 1100 bytes. */
const perSecond = 30 * Math.ceil((KBPS * 1000) / 8 / 30 / 1100);

/** How many sequence numbers from the first packet's on arrived, without a gap. */
function covered(packets: readonly { packet: RtpPacket }[]): number {
  const first = packets[0]?.packet.header.sequenceNumber;
  if (first === undefined) return 0;
  const seen = new Set(packets.map((p) => (p.packet.header.sequenceNumber - first) & 0xffff));
  let n = 0;
  while (seen.has(n)) n++;
  return n;
}

test('a viewer joining mid-GOP gets the cached keyframe at once; without the cache, only with the publisher’s next one', async () => {
  const [cached, control] = await Promise.all([liveSession({}), liveSession({ relayKeyframeCacheBytes: 0 })]);
  expect(cached.publisher.keyframes()).toBe(1);
  const [withCache, withoutCache] = await Promise.all([firstPackets(cached.server.url, 'cam', 'ops'), firstPackets(control.server.url, 'cam', 'ops')]);

  // The cached second of video and live packets after it, one sequence without a gap once the
  // viewer's NACKs (if any) are answered.
  await until(() => covered(withCache.packets) >= perSecond + 30, 'the cached group of pictures and live packets after it', 15_000);
  // The publisher has sent no keyframe since the one before the viewer came, and ignored the PLI: the
  // keyframe the viewer got came from the server's cache.
  expect(cached.publisher.keyframes()).toBe(1);
  const first = withCache.packets[0];
  expect(first && startsKeyframe('vp8', first.packet.payload)).toBe(true);
  const cacheMs = (first?.at ?? 0) - withCache.timing.connectedAt;
  expect(cacheMs).toBeLessThan(1000);

  const m = await scrape(cached.server.url);
  expect(m.histogram('switchboard_relay_first_video_packet_seconds').count).toBe(1);
  expect(m.histogram('switchboard_offer_answer_seconds', { mode: 'relay' }).count).toBe(2);
  expect(m.histogram('switchboard_answer_ice_connected_seconds', { mode: 'relay' }).count).toBe(2);
  expect(m.value('switchboard_relay_viewers')).toBe(1);
  expect(m.value('switchboard_relay_packets_out_total')).toBeGreaterThanOrEqual(60);
  expect(m.value('switchboard_relay_keyframe_cache_bytes')).toBeGreaterThan(KBPS * 125 * 0.9); // about a second of video at least
  expect(m.value('switchboard_relay_keyframe_cache_replays_total')).toBe(1);
  expect(m.value('switchboard_relay_keyframe_cache_evictions_total')).toBe(0);

  // The control: nothing reaches the viewer until the publisher's next keyframe, seconds later.
  await until(() => withoutCache.packets.length > 0, 'the first video packet without the cache', 20_000);
  const controlFirst = withoutCache.packets[0];
  expect(controlFirst && startsKeyframe('vp8', controlFirst.packet.payload)).toBe(true);
  expect(control.publisher.keyframes()).toBe(2);
  const controlMs = (controlFirst?.at ?? 0) - withoutCache.timing.connectedAt;
  expect(controlMs).toBeGreaterThanOrEqual(1000);
  expect((await scrape(control.server.url)).value('switchboard_relay_keyframe_cache_replays_total')).toBe(0);
  console.log(`first video packet after connected: ${cacheMs.toFixed(0)} ms with the keyframe cache, ${controlMs.toFixed(0)} ms without`);
}, 60_000);

test('a viewer that offers the server its connection (werift, not Chromium) gets the cached keyframe at once', async () => {
  const { server, publisher } = await liveSession({});
  const viewer = await firstPackets(server.url, 'cam', 'ops', true);
  await until(() => covered(viewer.packets) >= perSecond + 30, 'the cached group of pictures and live packets after it', 15_000);
  expect(publisher.keyframes()).toBe(1);
  const first = viewer.packets[0];
  if (!first) throw new Error('no packet');
  expect(startsKeyframe('vp8', first.packet.payload)).toBe(true);
  // Two connections, the publisher's and the viewer's own: none left over from an offer of the server's.
  const metrics = await scrape(server.url);
  expect(metrics.value('switchboard_relay_connections')).toBe(2);
  expect(metrics.value('switchboard_relay_keyframe_cache_replays_total')).toBe(1);
});
