// Simulated devices publishing to real Chromium viewers through a real server: mesh, relay, a cut
// event stream, and the time a viewer joining mid-GOP waits for a picture.
import { describe, expect, test } from 'bun:test';
import { browserTests, explainOnFailure, status, waitConnected, waitVideo } from '../e2e/browser';
import { startCuttingProxy } from '../e2e/cutting-proxy';
import { type Running, startServer, until } from '../helpers';
import { scrape } from '../metrics/scrape';
import { FIRST_FRAME, firstFrame, receivedKbps, startDevice, type TestDevice } from './helpers';

const { open, stopAfter } = browserTests(FIRST_FRAME);
const serve = (config: Parameters<typeof startServer>[0] = {}): Running => stopAfter(startServer(config));
const device = async (url: string, flags: string[]): Promise<TestDevice> => {
  const started = await startDevice(url, flags);
  stopAfter(started);
  return started;
};
const lines = (d: TestDevice) => () => d.lines.join('\n');

const E2E_TIMEOUT = 90_000;

describe('a simulated device and Chromium viewers', () => {
  for (const codec of ['h264', 'vp8'] as const) {
    test(
      `mesh, ${codec} at 1 Mbit/s: the device offers to a viewer, which decodes its video and receives the bitrate asked for`,
      async () => {
        const server = serve();
        // The clip is about 250 kbit/s: RTP padding makes up the rest.
        const cam = await device(server.url, ['--session', `mesh-${codec}`, '--peer', 'cam', '--codec', codec, '--bitrate', '1000']);
        const viewer = await open(`${server.url}/?session=mesh-${codec}&peer=v1&role=view`);
        const video = await explainOnFailure({ viewer }, () => waitVideo(viewer.page, 'cam'));
        expect(video.framesDecoded).toBeGreaterThan(0);
        expect(video.videoWidth).toBe(320);
        expect((await firstFrame(viewer.page)).codec).toBe(codec === 'h264' ? 'video/H264' : 'video/VP8');
        await until(() => cam.device.connections().v1 === true, 'the device to publish to v1', 10_000, lines(cam));
        expect(cam.device.counters.offersSent).toBe(1);
        const kbps = await receivedKbps(viewer.page);
        expect(kbps).toBeGreaterThan(850);
        expect(kbps).toBeLessThan(1300);
        expect(cam.source.counters.paddingBytes).toBeGreaterThan(cam.source.counters.mediaBytes);
        expect(viewer.errors).toEqual([]);
      },
      E2E_TIMEOUT,
    );
  }

  test(
    "mesh: a viewer's ice-restart gets a new offer with new ICE credentials, and its video goes on",
    async () => {
      const server = serve();
      const cam = await device(server.url, ['--session', 'restart', '--peer', 'cam', '--codec', 'vp8']);
      const viewer = await open(`${server.url}/?session=restart&peer=v1&role=view`);
      await explainOnFailure({ viewer }, () => waitVideo(viewer.page, 'cam'));
      const [before] = await viewer.page.evaluate(() => window.__remoteUfrags());
      // What the client's viewer sends when its connection failed.
      const asked = await fetch(`${server.url}/message/restart/v1`, {
        method: 'POST',
        body: JSON.stringify({ type: 'ice-restart', payload: { reason: 'the connection failed' }, target: 'cam' }),
      });
      expect(asked.status).toBe(200);
      await until(() => cam.device.counters.offersSent === 2, 'the offer that restarts ICE', 10_000, lines(cam));
      await explainOnFailure({ viewer }, () =>
        viewer.page.waitForFunction(() => window.switchboard.peers.cam?.offersReceived === 2 && window.switchboard.peers.cam?.answersSent === 2, undefined, { timeout: 10_000 }),
      );
      expect(cam.device.counters.iceRestarts).toBe(1);
      const [after] = await viewer.page.evaluate(() => window.__remoteUfrags());
      expect(before).toBeString();
      expect(after).toBeString();
      expect(after).not.toBe(before);
      expect(await receivedKbps(viewer.page, 60)).toBeGreaterThan(50);
    },
    E2E_TIMEOUT,
  );

  test(
    "relay: the device answers the server's offer, and a viewer of the session decodes through the server",
    async () => {
      const server = serve();
      const cam = await device(server.url, ['--session', 'relay', '--peer', 'cam', '--mode', 'relay', '--transport', 'ws']);
      await until(() => cam.device.state === 'publishing', 'the device to publish to switchboard', 20_000, lines(cam));
      expect(cam.device.connections()).toEqual({ switchboard: true });
      const viewer = await open(`${server.url}/?session=relay&peer=v1&role=view`);
      const video = await explainOnFailure({ viewer }, () => waitVideo(viewer.page, 'switchboard'));
      expect(video.framesDecoded).toBeGreaterThan(0);
      expect((await status(viewer.page)).publisher).toBe('cam');
      expect(cam.device.counters).toMatchObject({ answersSent: 1, offersSent: 0 });
      // The server asked for keyframes (for the viewer that joined) and the device made them.
      await until(() => cam.device.counters.pli > 0 && cam.source.counters.keyframesOnRequest > 0, 'a keyframe made on request', 10_000, lines(cam));
    },
    E2E_TIMEOUT,
  );

  test(
    'a cut event stream resumes from the last event id, nothing is renegotiated, and a viewer joining after gets video',
    async () => {
      const server = serve();
      const proxy = stopAfter(startCuttingProxy(server.url));
      // The device's first stream is cut where the viewer's arrival comes, its second in the middle of the
      // negotiation that follows: what was in flight is lost with the connection, and only the resume
      // can bring it back.
      proxy.cutAt('cam', 0, 'new-peer');
      proxy.cutAt('cam', 1, 'ice-candidate');
      const cam = await device(proxy.url, ['--session', 'cut', '--peer', 'cam', '--codec', 'vp8']);
      const v1 = await open(`${server.url}/?session=cut&peer=v1&role=view`);
      await explainOnFailure({ v1 }, () => waitVideo(v1.page, 'cam'));
      await until(() => cam.device.channel.resumes === 2, 'the second resume', 20_000, lines(cam));

      const requests = proxy.requests('cam');
      const lost = [0, 1].map((connection) => proxy.dropped('cam').find((e) => e.connection === connection));
      expect(lost.map((e) => e?.type)).toEqual(['new-peer', 'ice-candidate']);
      for (const event of lost) {
        if (!event) continue;
        // The next stream resumed from before the lost event, which the server then sent again.
        expect(Number(requests[event.connection + 1]?.lastEventId)).toBeLessThan(Number(event.id));
        expect(proxy.delivered('cam').some((e) => e.connection > event.connection && e.id === event.id && e.type === event.type)).toBe(true);
      }
      expect(cam.device.channel.reRegistrations).toBe(0);

      const v2 = await open(`${server.url}/?session=cut&peer=v2&role=view`);
      await explainOnFailure({ v2 }, () => waitVideo(v2.page, 'cam'));
      // One offer per viewer: the negotiation with v1 went on through the cut.
      expect(cam.device.counters.offersSent).toBe(2);
      await until(() => cam.device.connections().v1 === true && cam.device.connections().v2 === true, 'the device to publish to both viewers', 10_000, lines(cam));
      await waitConnected(v1.page, 'cam');
    },
    E2E_TIMEOUT,
  );

  test(
    'a registration the server no longer has is made again, and a viewer gets video from the new one',
    async () => {
      const server = serve();
      const cam = await device(server.url, ['--session', 'gone', '--peer', 'cam', '--transport', 'ws', '--codec', 'vp8']);
      await until(() => cam.lines.some((l) => l.includes('waiting')), 'the stream to open', 10_000, lines(cam));
      // Removed behind its back (an operator, or the peer timeout while it was away).
      expect((await fetch(`${server.url}/register/gone/cam`, { method: 'DELETE' })).status).toBe(200);
      await until(() => cam.device.channel.reRegistrations === 1, 'the device to register again', 20_000, lines(cam));
      const viewer = await open(`${server.url}/?session=gone&peer=v1&role=view`);
      await explainOnFailure({ viewer }, () => waitVideo(viewer.page, 'cam'));
    },
    E2E_TIMEOUT,
  );
});

/**
 * A relay viewer joining while the publisher is mid-GOP: how long from its first request
 * (`POST /register`) to its first decoded frame. The device ignores keyframe requests and sends a
 * keyframe every 10 s; the viewer joins between 0.5 s and 2 s after one that reached the server, so
 * the next comes 8 to 9.5 s later: room for a page that loads slowly on a busy machine. `config` is the server's: its settings decide what a joining viewer is sent first. Also
 * returns whether the device made a keyframe between the viewer's arrival and its first frame.
 */
async function firstFrameMidGop(config: Parameters<typeof startServer>[0]): Promise<{ ms: number; device: TestDevice; server: Running; keyframesMeanwhile: number }> {
  const server = serve(config);
  const cam = await device(server.url, ['--session', 'gop', '--peer', 'cam', '--mode', 'relay', '--ignore-pli', '--keyframe-interval-s', '10', '--codec', 'vp8']);
  await until(() => cam.device.state === 'publishing', 'the device to publish to switchboard', 20_000, lines(cam));
  // The encoder runs from the device's start, as a camera's does: its first keyframe may have gone out
  // before the connection was up, and the server never saw it. Mid-GOP is inside a group the server got.
  const keyframesConnected = cam.source.counters.keyframes;
  const sinceKeyframe = () => (cam.source.lastKeyframeAt === undefined ? -1 : Date.now() - cam.source.lastKeyframeAt);
  await until(() => cam.source.counters.keyframes > keyframesConnected && sinceKeyframe() >= 500 && sinceKeyframe() <= 2000, 'the device to be mid-GOP', 30_000);
  const keyframesBefore = cam.source.counters.keyframes;
  const viewer = await open(`${server.url}/?session=gop&peer=v1&role=view`);
  const { afterRequestMs } = await explainOnFailure({ viewer }, () => firstFrame(viewer.page, 20_000));
  return { ms: afterRequestMs, device: cam, server, keyframesMeanwhile: cam.source.counters.keyframes - keyframesBefore };
}

describe('time to first frame of a relay viewer joining mid-GOP, from a device that ignores keyframe requests', () => {
  test(
    'with the keyframe cache (the default): the viewer decodes the cached group at once, long before the next keyframe',
    async () => {
      const { ms, device: cam, server, keyframesMeanwhile } = await firstFrameMidGop({});
      console.log(`first frame ${Math.round(ms)} ms after the viewer's first request, with the keyframe cache`);
      // What proves the cache did it, whatever the machine's load: the frame was decoded before the
      // device made another keyframe (the next one was 8 s or more away), from a group the server
      // replayed. How fast is the benchmark's to say (bench/first-frame.ts), not a timed assertion:
      // on a loaded machine the page alone takes seconds.
      expect(keyframesMeanwhile).toBe(0);
      expect(cam.device.counters.pli + cam.device.counters.fir).toBeGreaterThan(0);
      expect(cam.source.counters.keyframesOnRequest).toBe(0);
      const m = await scrape(server.url);
      expect(m.value('switchboard_relay_keyframe_cache_replays_total')).toBe(1);
      expect(m.value('switchboard_relay_keyframe_cache_bytes')).toBeGreaterThan(0);
    },
    E2E_TIMEOUT,
  );

  test(
    'without a keyframe cache: the viewer waits for the next keyframe, 1 s or more',
    async () => {
      const { ms, device: cam, server, keyframesMeanwhile } = await firstFrameMidGop({ relayKeyframeCacheBytes: 0 });
      console.log(`first frame ${Math.round(ms)} ms after the viewer's first request, without the keyframe cache`);
      expect(ms).toBeGreaterThanOrEqual(1000);
      // The server asked for a keyframe and the device ignored it: the frame came with its next one.
      expect(cam.device.counters.pli + cam.device.counters.fir).toBeGreaterThan(0);
      expect(cam.source.counters.keyframesOnRequest).toBe(0);
      expect(keyframesMeanwhile).toBeGreaterThanOrEqual(1);
      expect((await scrape(server.url)).value('switchboard_relay_keyframe_cache_replays_total')).toBe(0);
    },
    E2E_TIMEOUT,
  );
});
