// Relay sessions in real Chromium against a real server: the publisher uploads one copy, the server
// (peer `switchboard`, werift) forwards it to every viewer.
import { describe, expect, test } from 'bun:test';
import { networkInterfaces } from 'node:os';
import type { Page } from 'playwright-core';
import { type Running, startServer, until } from '../helpers';
import { browserTests, type PeerPage, publish, status, waitConnected, waitVideo } from './browser';

/**
 * Runs before the page's scripts: keeps every RTCPeerConnection the page creates, when the first one
 * connected and when its first video frame was decoded (page clock), so that tests count connections
 * and streams from the browser's own getStats, whatever the client does.
 */
const WATCH_CONNECTIONS = `(() => {
  const created = [];
  const timing = { connectedAt: undefined, firstFrameAt: undefined };
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      created.push(this);
      this.addEventListener('connectionstatechange', () => {
        if (this.connectionState === 'connected' && timing.connectedAt === undefined) timing.connectedAt = performance.now();
      });
    }
  };
  const reports = async () => (await Promise.all(created.filter((pc) => pc.connectionState !== 'closed').map(async (pc) => [...(await pc.getStats()).values()]))).flat();
  const poll = setInterval(async () => {
    if (timing.connectedAt === undefined) return;
    if ((await reports()).some((r) => r.type === 'inbound-rtp' && r.kind === 'video' && r.framesDecoded > 0)) {
      timing.firstFrameAt ??= performance.now();
      clearInterval(poll);
    }
  }, 20);
  window.__watch = {
    timing,
    async summary() {
      const all = await reports();
      const codecs = new Map(all.filter((r) => r.type === 'codec').map((r) => [r.id, r.mimeType]));
      const inbound = all.filter((r) => r.type === 'inbound-rtp' && r.kind === 'video');
      return {
        connections: created.filter((pc) => pc.connectionState !== 'closed').length,
        created: created.length,
        videoOutbound: all.filter((r) => r.type === 'outbound-rtp' && r.kind === 'video').length,
        framesDecoded: inbound.reduce((n, r) => n + (r.framesDecoded ?? 0), 0),
        inboundCodecs: inbound.map((r) => codecs.get(r.codecId)),
      };
    },
  };
})();`;

interface Summary {
  connections: number;
  created: number;
  videoOutbound: number;
  framesDecoded: number;
  inboundCodecs: string[];
}

declare global {
  interface Window {
    __watch: { timing: { connectedAt?: number; firstFrameAt?: number }; summary(): Promise<Summary> };
  }
}

const summary = (page: Page) => page.evaluate(() => window.__watch.summary());

const { open, stopAfter } = browserTests(WATCH_CONNECTIONS);
const serve = (config: Parameters<typeof startServer>[0] = {}): Running => stopAfter(startServer(config));

/**
 * Waits until the page's summary passes `check`. Not with page.waitForFunction: the summary is async
 * (getStats), and waitForFunction takes the promise an async predicate returns for a truthy answer, so
 * it returns at once whatever the summary says.
 */
async function summaryUntil(page: Page, check: (s: Summary) => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  await until(async () => check(await summary(page)), what, timeoutMs);
}

/** Waits until the page has decoded `frames` more video frames than it had: video is still flowing. */
async function keepsDecoding(page: Page, frames = 30): Promise<void> {
  const from = (await summary(page)).framesDecoded;
  await summaryUntil(page, (s) => s.framesDecoded >= from + frames, `${frames} more frames decoded`);
}

const localAddresses = () =>
  new Set(
    Object.values(networkInterfaces())
      .flat()
      .map((i) => i?.address),
  );

const E2E_TIMEOUT = 90_000;

describe('relay sessions in Chromium', () => {
  test(
    'a publisher and three viewers: one upload, every viewer decodes; a late viewer gets a keyframe at once; a viewer cut off disturbs no one',
    async () => {
      const server = serve();
      const publisher = await publish(await open(`${server.url}/?session=relay&peer=pub&role=publish&mode=relay`));
      await publisher.page.waitForFunction(() => window.switchboard.phase === 'live');
      expect((await status(publisher.page)).mode).toBe('relay');
      expect(await publisher.page.inputValue('#viewer-link')).toBe(`${server.url}/?session=relay&role=view&mode=relay`);

      const viewers: PeerPage[] = [];
      for (const id of ['v1', 'v2', 'v3']) viewers.push(await open(`${server.url}/?session=relay&peer=${id}&role=view`));
      const interfaces = localAddresses();
      for (const viewer of viewers) {
        const video = await waitVideo(viewer.page, 'switchboard');
        expect(video.framesDecoded).toBeGreaterThan(0);
        const seen = await status(viewer.page);
        // The only connection is with the server, and its media path ends at one of the server's addresses.
        expect(seen.mode).toBe('relay');
        expect(seen.publisher).toBe('pub');
        expect(Object.keys(seen.peers)).toEqual(['switchboard']);
        const pair = seen.peers.switchboard?.pair;
        expect(pair?.remote).toBe('host');
        expect(interfaces.has(pair?.remoteAddress.replace(/:\d+$/, ''))).toBe(true);
        // The server's host candidates came in its offer, and the card counts them.
        expect(seen.peers.switchboard?.remoteCandidates.host).toBeGreaterThan(0);
        expect(await viewer.page.textContent('[data-relay="server"] h2')).toBe('switchboard (the server relays the media)');
      }
      // Whatever the number of viewers, the publisher has one connection and sends one video stream.
      await waitConnected(publisher.page, 'switchboard');
      expect(await summary(publisher.page)).toMatchObject({ connections: 1, created: 1, videoOutbound: 1 });
      expect(Object.keys((await status(publisher.page)).peers)).toEqual(['switchboard']);

      // A viewer five seconds into the stream: its first frame within 2 s of its connection.
      await Bun.sleep(5000);
      const late = await open(`${server.url}/?session=relay&peer=late&role=view`);
      await waitVideo(late.page, 'switchboard');
      await late.page.waitForFunction(() => window.__watch.timing.firstFrameAt !== undefined);
      const { connectedAt, firstFrameAt } = await late.page.evaluate(() => window.__watch.timing);
      expect((firstFrameAt ?? Infinity) - (connectedAt ?? 0)).toBeLessThan(2000);
      expect(await summary(publisher.page)).toMatchObject({ connections: 1, created: 1, videoOutbound: 1 });

      // v3's network goes: no leave reaches the server, its page just closes.
      const cut = viewers.pop() as PeerPage;
      await cut.page.route('**/register/**', (route) => (route.request().method() === 'DELETE' ? route.abort() : route.continue()));
      await cut.page.close({ runBeforeUnload: false });
      for (const viewer of [...viewers, late]) await keepsDecoding(viewer.page);
      const relayed = server.relay?.stats();
      expect(relayed?.sessions).toBe(1);
      // The server received the publisher's packets once and sent copies to the viewers.
      expect(relayed?.packetsOut).toBeGreaterThan(relayed?.packetsIn ?? Infinity);
      for (const p of [publisher, ...viewers, late]) expect(p.errors).toEqual([]);
    },
    E2E_TIMEOUT,
  );

  test(
    'H.264 first (RELAY_VIDEO_CODECS): the publisher leaves, viewers are told and keep their connection; it comes back and video resumes on it',
    async () => {
      const server = serve({ relayVideoCodecs: ['h264', 'vp8'] });
      const url = `${server.url}/?session=back&peer=pub&role=publish&mode=relay&source=pattern`;
      const first = await publish(await open(url));
      await first.page.waitForFunction(() => window.switchboard.phase === 'live');
      const viewer = await open(`${server.url}/?session=back&peer=v1&role=view`);
      await waitVideo(viewer.page, 'switchboard');
      expect((await summary(viewer.page)).inboundCodecs).toEqual(['video/H264']);

      await first.page.click('#leave');
      await viewer.page.waitForFunction(() => window.switchboard.publisher === undefined);
      expect(await viewer.page.locator('#log').innerText()).toContain('pub stopped publishing');
      expect((await status(viewer.page)).peers.switchboard?.connectionState).toBe('connected');

      const again = await publish(await open(url));
      await viewer.page.waitForFunction(() => window.switchboard.publisher === 'pub');
      await keepsDecoding(viewer.page);
      // The same connection all along: one offer from the server, one RTCPeerConnection.
      expect((await status(viewer.page)).peers.switchboard).toMatchObject({ offersReceived: 1, connectionState: 'connected' });
      expect(await summary(viewer.page)).toMatchObject({ created: 1, inboundCodecs: ['video/H264'] });
      await summaryUntil(again.page, (s) => s.videoOutbound === 1, 'the publisher back to sending video', 10_000);
      expect(await summary(again.page)).toMatchObject({ connections: 1, created: 1, videoOutbound: 1 });
      for (const p of [first, viewer, again]) expect(p.errors).toEqual([]);
    },
    E2E_TIMEOUT,
  );
});
