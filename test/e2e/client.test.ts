// The browser client in real Chromium against a real server: publisher and viewers driven through the
// page's own form and URL, proven by decoded video; over SSE and over the WebSocket transport.
import { describe, expect, test } from 'bun:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Running, startServer, until } from '../helpers';
import { browserTests, publish, status, waitConnected, waitPeers, waitVideo } from './browser';
import { startCuttingProxy } from './cutting-proxy';

/** Counts the page's camera requests, to tell what opened the camera and when. */
const COUNT_CAMERA_REQUESTS = `
  window.__cameraRequests = 0;
  const devices = navigator.mediaDevices;
  const original = devices?.getUserMedia?.bind(devices);
  if (original) devices.getUserMedia = (constraints) => { window.__cameraRequests++; return original(constraints); };
`;
declare global {
  interface Window {
    __cameraRequests: number;
  }
}

const { open, stopAfter } = browserTests(COUNT_CAMERA_REQUESTS);
const serve = (config: Parameters<typeof startServer>[0] = {}): Running => stopAfter(startServer(config));

const E2E_TIMEOUT = 60_000;

describe('publisher and viewers in Chromium', () => {
  test(
    'a link with role=publish shows the page ready to publish: the camera opens and the publisher registers only on a click',
    async () => {
      const server = serve();
      const publisher = await open(`${server.url}/?session=click&peer=pub&role=publish`);
      await publisher.page.waitForFunction(() => window.switchboard.phase === 'ready');
      expect(await publisher.page.textContent('#status')).toBe('Ready to publish session click: press Start stream to turn the camera on.');
      expect(await publisher.page.inputValue('#session')).toBe('click');
      expect(await publisher.page.isEnabled('#publish')).toBe(true);
      // The page's scripts have run: no camera was asked for, and the server knows no such peer.
      expect(await publisher.page.evaluate(() => window.__cameraRequests)).toBe(0);
      const unknown = await fetch(`${server.url}/events/click/pub`);
      expect(unknown.status).toBe(404);
      expect((await unknown.json()).error).toBe('session_not_found');

      await publisher.page.click('#publish');
      await publisher.page.waitForFunction(() => window.switchboard.phase === 'live');
      expect(await publisher.page.evaluate(() => window.__cameraRequests)).toBe(1);
      const viewer = await open(`${server.url}/?session=click&peer=v1&role=view`);
      expect((await waitVideo(viewer.page, 'pub')).framesDecoded).toBeGreaterThan(0);
      for (const p of [publisher, viewer]) expect(p.errors).toEqual([]);
    },
    E2E_TIMEOUT,
  );

  test(
    'with AUTH_MODE=token the page carries its peer token on every request, and a viewer reload still works',
    async () => {
      const server = serve({ authMode: 'token' });
      const publisher = await publish(await open(`${server.url}/?session=tokens&peer=pub&role=publish`));
      await publisher.page.waitForFunction(() => window.switchboard.phase === 'live');
      const viewer = await open(`${server.url}/?session=tokens&peer=v1&role=view`);
      await waitConnected(viewer.page, 'pub');
      expect((await waitVideo(viewer.page, 'pub')).framesDecoded).toBeGreaterThan(0);
      // A reload registers the same id again: its own leave must not undo that, and its token takes it over.
      await viewer.page.reload();
      await waitConnected(viewer.page, 'pub');
      await waitVideo(viewer.page, 'pub');
      await waitPeers(publisher.page, ['v1'], 'connected');
    },
    E2E_TIMEOUT,
  );

  test(
    'over the WebSocket transport (?transport=ws) with tokens: a socket publisher, a socket viewer and an SSE viewer all decode video',
    async () => {
      const server = serve({ authMode: 'token' });
      const publisher = await publish(await open(`${server.url}/?session=ws&peer=pub&role=publish&transport=ws`));
      await publisher.page.waitForFunction(() => window.switchboard.phase === 'live');
      const wsViewer = await open(`${server.url}/?session=ws&peer=v-ws&role=view&transport=ws`);
      const sseViewer = await open(`${server.url}/?session=ws&peer=v-sse&role=view`);
      for (const viewer of [wsViewer, sseViewer]) {
        await waitConnected(viewer.page, 'pub');
        expect((await waitVideo(viewer.page, 'pub')).framesDecoded).toBeGreaterThan(0);
      }
      expect((await status(publisher.page)).transport).toBe('ws');
      expect((await status(sseViewer.page)).transport).toBe('sse');
      // A reload of the socket viewer negotiates again; its answer and candidates leave on its socket.
      const sent: string[] = [];
      wsViewer.page.on('websocket', (socket) => socket.on('framesent', ({ payload }) => void sent.push(String(payload))));
      await wsViewer.page.reload();
      await waitConnected(wsViewer.page, 'pub');
      await waitVideo(wsViewer.page, 'pub');
      expect(sent.some((frame) => JSON.parse(frame).type === 'answer')).toBe(true);
      await waitPeers(publisher.page, ['v-sse', 'v-ws'], 'connected');
    },
    E2E_TIMEOUT,
  );

  test(
    'two viewers, one from the copied viewer link and one through the form, both connect and decode video',
    async () => {
      const server = serve();
      const publisher = await publish(await open(`${server.url}/?session=e2e&peer=pub&role=publish`));
      await publisher.page.waitForFunction(() => window.switchboard.phase === 'live');
      // The publisher's share link, as a person would copy it.
      const link = await publisher.page.inputValue('#viewer-link');
      expect(link).toBe(`${server.url}/?session=e2e&role=view`);
      const first = await open(link);
      // The second one types the session id and presses Join stream.
      const second = await open(`${server.url}/`);
      await second.page.fill('#session', 'e2e');
      await second.page.click('#view');

      const viewers: string[] = [];
      for (const viewer of [first, second]) {
        const connected = await waitConnected(viewer.page, 'pub');
        expect(connected.connectionState).toBe('connected');
        const video = await waitVideo(viewer.page, 'pub');
        expect(video.framesDecoded).toBeGreaterThan(0);
        expect(video.videoWidth).toBeGreaterThan(0);
        viewers.push((await status(viewer.page)).peerId as string);
      }
      // One RTCPeerConnection per viewer on the publisher's side.
      const seen = await waitPeers(publisher.page, viewers, 'connected');
      expect(Object.keys(seen).sort()).toEqual([...viewers].sort());
      // Its stats show frames going out to each (read once a second).
      await publisher.page.waitForFunction((ids) => ids.every((id) => (window.switchboard.peers[id]?.framesSent ?? 0) > 0), viewers);

      const shot = join(mkdtempSync(join(tmpdir(), 'switchboard-e2e-')), 'viewer.png');
      await first.page.screenshot({ path: shot, fullPage: true });
      console.log(`screenshot of a viewer: ${shot}`);
      for (const p of [publisher, first, second]) expect(p.errors).toEqual([]);
    },
    E2E_TIMEOUT,
  );

  test(
    'a viewer reloads mid-stream: it gets video again, and the publisher sees exactly who is there',
    async () => {
      // Only a DELETE on unload can remove a reloaded peer before this timeout.
      const server = serve({ peerTimeoutMs: 600_000 });
      const publisher = await publish(await open(`${server.url}/?session=reload&peer=pub&role=publish`));
      const fixed = await open(`${server.url}/?session=reload&peer=v1&role=view`);
      const random = await open(`${server.url}/?session=reload&role=view`);
      const randomId = await random.page.evaluate(() => window.switchboard.peerId as string);
      for (const viewer of [fixed, random]) await waitVideo(viewer.page, 'pub');
      await waitPeers(publisher.page, ['v1', randomId], 'connected');

      // Same peer id after the reload (it is in the URL): the publisher replaces its connection.
      await fixed.page.reload();
      await waitConnected(fixed.page, 'pub');
      expect((await waitVideo(fixed.page, 'pub')).framesDecoded).toBeGreaterThan(0);
      await waitPeers(publisher.page, ['v1', randomId], 'connected');

      // A generated id: a new one after the reload, and the old one is gone at once.
      await random.page.reload();
      await waitVideo(random.page, 'pub');
      const newId = await random.page.evaluate(() => window.switchboard.peerId as string);
      expect(newId).not.toBe(randomId);
      const seen = await waitPeers(publisher.page, ['v1', newId], 'connected');
      expect(Object.keys(seen).sort()).toEqual(['v1', newId].sort());

      // The viewer that stayed was not renegotiated.
      const kept = (await status(fixed.page)).peers.pub;
      expect(kept?.offersReceived).toBe(1);
      for (const p of [publisher, fixed, random]) expect(p.errors).toEqual([]);
    },
    E2E_TIMEOUT,
  );

  test(
    'the publisher reloads: it offers to the viewers already there, and both get video again',
    async () => {
      const server = serve({ peerTimeoutMs: 600_000 });
      const publisher = await publish(await open(`${server.url}/?session=pubreload&peer=pub&role=publish`));
      const viewers = [await open(`${server.url}/?session=pubreload&peer=v1&role=view`), await open(`${server.url}/?session=pubreload&peer=v2&role=view`)];
      await waitPeers(publisher.page, ['v1', 'v2'], 'connected');

      await publisher.page.reload();
      await publish(publisher);
      // No new-peer reaches the one registering: only the peers list of its registration names the viewers.
      await waitPeers(publisher.page, ['v1', 'v2'], 'connected');
      for (const viewer of viewers) {
        await waitVideo(viewer.page, 'pub');
        expect((await status(viewer.page)).peers.pub).toMatchObject({ offersReceived: 1, connectionState: 'connected' });
      }
    },
    E2E_TIMEOUT,
  );

  test(
    'the test pattern; Leave drops the viewer from the publisher at once; DELETE /session ends both pages',
    async () => {
      const server = serve({ peerTimeoutMs: 600_000 });
      const publisher = await publish(await open(`${server.url}/?session=bye&peer=pub&role=publish&source=pattern`));
      const viewer = await open(`${server.url}/?session=bye&peer=v1&role=view`);
      await waitPeers(publisher.page, ['v1'], 'connected');
      expect((await waitVideo(viewer.page, 'pub')).videoWidth).toBe(640);
      expect((await status(publisher.page)).source).toBe('pattern');

      await viewer.page.click('#leave');
      await waitPeers(publisher.page, [], 'connected');
      expect(await viewer.page.textContent('#status')).toBe('Left the session.');

      await viewer.page.click('#view');
      await waitPeers(publisher.page, ['v1'], 'connected');
      expect((await fetch(`${server.url}/session/bye`, { method: 'DELETE' })).status).toBe(200);
      for (const page of [publisher.page, viewer.page]) {
        await page.waitForFunction(() => window.switchboard.phase === 'ended' && window.switchboard.stream === 'closed');
        expect(await page.textContent('#status')).toBe('Session bye was closed by the server.');
      }
      // Nobody came back: the closed session was not registered again.
      expect((await fetch(`${server.url}/message/bye/pub`, { method: 'POST', body: '{"type":"x"}' })).status).toBe(404);
    },
    E2E_TIMEOUT,
  );

  test(
    'errors in plain words: a server that cannot be reached',
    async () => {
      const server = serve();
      const viewer = await open(`${server.url}/?session=gone`);
      await server.stop();
      await viewer.page.click('#view');
      await viewer.page.waitForFunction(() => window.switchboard.phase === 'failed');
      expect(await viewer.page.textContent('#error')).toMatch(
        /^Cannot reach the signalling server at http:\/\/127\.0\.0\.1:\d+ \(POST \/register\/gone\/viewer-\w+\)\. Is the server running/,
      );
      expect(await viewer.page.isEnabled('#view')).toBe(true);
    },
    E2E_TIMEOUT,
  );

  test(
    'the event stream drops mid-negotiation, twice: it resumes and no signalling message is lost',
    async () => {
      const server = serve();
      const proxy = startCuttingProxy(server.url);
      stopAfter(proxy);
      // The viewer's first stream dies as the offer reaches it, the next one at the first ICE candidate.
      proxy.cutAt('v1', 0, 'offer');
      proxy.cutAt('v1', 1, 'ice-candidate');
      // The viewer is there first, its stream open, so the offer comes mid-stream.
      const viewer = await open(`${proxy.url}/?session=cut&peer=v1&role=view`);
      await viewer.page.waitForFunction(() => window.switchboard.stream === 'open');
      const publisher = await publish(await open(`${proxy.url}/?session=cut&peer=pub&role=publish`));

      await waitConnected(viewer.page, 'pub');
      expect((await waitVideo(viewer.page, 'pub')).framesDecoded).toBeGreaterThan(0);
      // ICE can connect before the publisher's candidates arrive (the viewer's own suffice): wait for the
      // second resume to have replayed them too.
      await viewer.page.waitForFunction(() => window.switchboard.resumes >= 2 && (window.switchboard.peers.pub?.remoteCandidates.host ?? 0) > 0);
      await until(() => proxy.dropped('v1').every((lost) => proxy.delivered('v1').some((e) => e.id === lost.id && e.connection > lost.connection)));

      const dropped = proxy.dropped('v1').filter((e) => e.type !== 'ping');
      expect(dropped.map((e) => [e.connection, e.type])).toContainEqual([0, 'offer']);
      expect(dropped.map((e) => [e.connection, e.type])).toContainEqual([1, 'ice-candidate']);
      // Each reconnect said where it stopped: just before what was dropped.
      const requests = proxy.requests('v1');
      expect(requests.map((r) => r.lastEventId)).toEqual([expect.stringMatching(/^\d+$/), String(Number(dropped[0]?.id) - 1), expect.stringMatching(/^\d+$/)]);
      // Nothing twice.
      const ids = proxy
        .delivered('v1')
        .filter((e) => e.type !== 'ping')
        .map((e) => e.id);
      expect(new Set(ids).size).toBe(ids.length);

      const seenByViewer = await status(viewer.page);
      expect(seenByViewer.resumes).toBe(2);
      expect(seenByViewer.reRegistrations).toBe(0);
      // Resumed, not renegotiated: one offer, one answer.
      expect(seenByViewer.peers.pub).toMatchObject({ offersReceived: 1, answersSent: 1 });
      expect((await status(publisher.page)).peers.v1).toMatchObject({ offersSent: 1, answersReceived: 1 });
    },
    E2E_TIMEOUT,
  );

  test(
    'a first stream lost before its first event resumes from the id its registration gave: nothing is renegotiated',
    async () => {
      const server = serve();
      const proxy = startCuttingProxy(server.url);
      stopAfter(proxy);
      // The publisher is there first: the offer is held for the viewer and is the first thing its stream carries.
      const publisher = await publish(await open(`${proxy.url}/?session=first&peer=pub&role=publish`));
      await publisher.page.waitForFunction(() => window.switchboard.phase === 'live');
      proxy.cutAt('v1', 0, 'offer');
      const viewer = await open(`${proxy.url}/?session=first&peer=v1&role=view`);

      await waitConnected(viewer.page, 'pub');
      await waitVideo(viewer.page, 'pub');
      // The first stream already starts from the position POST /register returned.
      const [first, second] = proxy.requests('v1');
      expect(first?.lastEventId).toMatch(/^\d+$/);
      expect(second?.lastEventId).toBe(first?.lastEventId ?? '');
      const seenByViewer = await status(viewer.page);
      expect(seenByViewer.reRegistrations).toBe(0);
      expect(seenByViewer.peers.pub).toMatchObject({ offersReceived: 1, answersSent: 1 });
      await waitPeers(publisher.page, ['v1'], 'connected');
    },
    E2E_TIMEOUT,
  );
});
