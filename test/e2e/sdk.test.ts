// The client library in Chromium, imported by a page on another origin from the server's
// /sdk/switchboard.js: a publisher and a viewer decode video; a cut event stream resumes without
// renegotiating; either side may offer an ICE restart, both at once included (perfect negotiation).
import { describe, expect, test } from 'bun:test';
import type { Page } from 'playwright-core';
import type * as Library from '../../src/client/sdk/index';
import type { Session } from '../../src/client/sdk/switchboard';
import { type Running, startServer } from '../helpers';
import { browserTests, explainOnFailure } from './browser';
import { startCuttingProxy } from './cutting-proxy';
import { libraryLoaded, startDashboard } from './dashboard';

declare global {
  interface Window {
    sb: typeof Library;
    me: Session;
    events: string[];
  }
}

const { open, stopAfter } = browserTests();
const serve = (): Running => stopAfter(startServer());
const TIMEOUT = 60_000;

/** Opens the dashboard page with the library from `server`. */
async function dashboardPage(server: string) {
  const dashboard = stopAfter(startDashboard());
  const peer = await open(dashboard.pageUrl(server));
  await libraryLoaded(peer.page);
  return peer;
}

/** Publishes a small fake camera in `session` as `peer`, through `server`. */
function publish(page: Page, server: string, session: string, peer: string): Promise<void> {
  return page.evaluate(
    async ({ server, session, peer }) => {
      const media = await navigator.mediaDevices.getUserMedia({ video: { width: 160, height: 120 }, audio: false });
      window.me = await window.sb.join({ server, session, peer, role: 'publish', media });
    },
    { server, session, peer },
  );
}

/** Joins as a viewer; the remote video goes to the page's <video>, the events to `window.events`. */
function view(page: Page, server: string, session: string, peer: string): Promise<void> {
  return page.evaluate(
    async ({ server, session, peer }) => {
      window.events = [];
      const me = await window.sb.join({ server, session, peer, role: 'view' });
      window.me = me;
      const video = document.querySelector('video') as HTMLVideoElement;
      me.on('track', ({ stream }) => {
        video.srcObject = stream;
      });
      for (const type of ['peer-joined', 'peer-left', 'connection-state', 'stream', 'error'] as const) {
        me.on(type, (e) => void window.events.push(`${type} ${JSON.stringify(e)}`));
      }
    },
    { server, session, peer },
  );
}

/** Frames decoded from `remote`, once more than `after` were, and the <video> has a picture. */
async function decoding(page: Page, remote: string, after = 0): Promise<number> {
  const handle = await page.waitForFunction(
    ([remote, after]) => {
      const frames = window.me?.peer(remote as string)?.stats?.framesDecoded ?? 0;
      const video = document.querySelector('video');
      return frames > (after as number) && (video?.videoWidth ?? 0) > 0 ? frames : false;
    },
    [remote, after] as const,
    { timeout: 30_000, polling: 100 },
  );
  return (await handle.jsonValue()) as number;
}

const peerInfo = (page: Page, remote: string) =>
  page.evaluate((remote) => {
    const info = window.me.peer(remote);
    return info && { ...info, stream: undefined };
  }, remote);

describe('the client library in Chromium, from /sdk/switchboard.js on another origin', () => {
  test(
    'a publisher and a viewer decode video; stats name the candidate pair, bitrate, fps and RTT; leave tells the other side',
    async () => {
      const server = serve();
      const publisher = await dashboardPage(server.url);
      const viewer = await dashboardPage(server.url);
      await publish(publisher.page, server.url, 'lib', 'pub');
      await view(viewer.page, server.url, 'lib', 'v1');
      await explainOnFailure({}, () => decoding(viewer.page, 'pub'));
      await viewer.page.waitForFunction(() => (window.me.peer('pub')?.stats?.inKbps ?? 0) > 0 && window.me.peer('pub')?.stats?.rttMs !== undefined, undefined, { timeout: 15_000 });
      const seen = await peerInfo(viewer.page, 'pub');
      expect(seen?.connectionState).toBe('connected');
      expect(seen?.stats?.pair).toMatchObject({ local: 'host', remote: 'host' });
      expect(seen?.stats?.framesPerSecond).toBeGreaterThan(0);
      expect(seen?.stats?.frameWidth).toBe(160);
      expect(await viewer.page.evaluate(() => window.events)).toContain('connection-state {"peerId":"pub","state":"connected"}');
      expect(await viewer.page.evaluate(() => window.me.signalling.transport)).toBe('sse');

      await publisher.page.evaluate(() => window.me.leave());
      await viewer.page.waitForFunction(() => window.events.includes('peer-left {"peerId":"pub"}'), undefined, { timeout: 10_000 });
      expect(await viewer.page.evaluate(() => window.me.peers().length)).toBe(0);
      for (const p of [publisher, viewer]) expect(p.errors).toEqual([]);
    },
    TIMEOUT,
  );

  test(
    'the viewer’s event stream is cut as the offer reaches it: it resumes, and nothing is renegotiated',
    async () => {
      const server = serve();
      const proxy = stopAfter(startCuttingProxy(server.url));
      const publisher = await dashboardPage(server.url);
      const viewer = await dashboardPage(proxy.url);
      // The viewer is there first, its stream open, so the offer comes mid-stream and is lost with it.
      proxy.cutAt('v1', 0, 'offer');
      await view(viewer.page, proxy.url, 'cut', 'v1');
      await viewer.page.waitForFunction(() => window.me.signalling.streamState === 'open');
      await publish(publisher.page, server.url, 'cut', 'pub');
      await decoding(viewer.page, 'pub');
      expect(proxy.dropped('v1').map((e) => e.type)).toContain('offer');
      expect(await viewer.page.evaluate(() => [window.me.signalling.resumes, window.me.signalling.reRegistrations])).toEqual([1, 0]);
      expect(await peerInfo(viewer.page, 'pub')).toMatchObject({ offersReceived: 1, answersSent: 1 });
      expect(await peerInfo(publisher.page, 'v1')).toMatchObject({ offersSent: 1, answersReceived: 1 });
    },
    TIMEOUT,
  );

  test(
    'perfect negotiation: the viewer offers an ICE restart itself (with fresh ICE servers; the join took its registration’s), then both sides do at once; video goes on',
    async () => {
      const server = serve();
      const publisher = await dashboardPage(server.url);
      const viewer = await dashboardPage(server.url);
      // The join makes its connection with the ICE servers its registration's answer brought; a restart asks for fresh ones.
      const iceRequests: string[] = [];
      viewer.page.on('request', (r) => {
        if (new URL(r.url()).pathname === '/iceServers') iceRequests.push(r.method());
      });
      await publish(publisher.page, server.url, 'glare', 'pub');
      await view(viewer.page, server.url, 'glare', 'v1');
      let frames = await decoding(viewer.page, 'pub');
      expect(iceRequests).toEqual([]);

      await viewer.page.evaluate(() => window.me.restartIce('pub'));
      await publisher.page.waitForFunction(() => window.me.peer('v1')?.offersReceived === 1 && window.me.peer('v1')?.signalingState === 'stable');
      frames = await decoding(viewer.page, 'pub', frames);
      expect(await peerInfo(viewer.page, 'pub')).toMatchObject({ offersSent: 1, answersReceived: 1, iceRestarts: 1 });
      expect(iceRequests).toEqual(['GET']);

      // Both offer: the viewer (polite) gives way, the publisher keeps its offer.
      await Promise.all([publisher.page.evaluate(() => window.me.restartIce('v1')), viewer.page.evaluate(() => window.me.restartIce('pub'))]);
      const settled = () => window.me.peers().every((p) => p.signalingState === 'stable' && p.connectionState === 'connected');
      await publisher.page.waitForFunction(settled, undefined, { timeout: 20_000 });
      await viewer.page.waitForFunction(settled, undefined, { timeout: 20_000 });
      await decoding(viewer.page, 'pub', frames);
      const after = await peerInfo(viewer.page, 'pub');
      expect(after?.offersReceived).toBe(2);
      expect(after?.offersSent).toBe(2);
      for (const p of [publisher, viewer]) expect(p.errors).toEqual([]);
    },
    TIMEOUT,
  );
});
