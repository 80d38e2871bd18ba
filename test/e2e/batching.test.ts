// The client library batches trickled ICE candidates: in Chromium, the candidates that come within a
// few milliseconds of each other leave in one POST /message (or one WebSocket frame), and the session
// still connects. Requests and frames are counted as the browser sent them.
import { describe, expect, test } from 'bun:test';
import type { Page } from 'playwright-core';
import type * as Library from '../../src/client/sdk/index';
import type { Session } from '../../src/client/sdk/switchboard';
import { startServer } from '../helpers';
import { browserTests, explainOnFailure } from './browser';
import { libraryLoaded, startDashboard } from './dashboard';

declare global {
  interface Window {
    sb: typeof Library;
    me: Session;
  }
}

const { open, stopAfter } = browserTests();
const TIMEOUT = 60_000;

/** What a page sent the server: each message request (or frame) as the messages it carried. */
interface Sent {
  /** Per POST /message (or WebSocket frame): the types of the messages in it. */
  sends: string[][];
}

/** Records every POST /message and every frame the page sends, by the messages each carried. */
function record(page: Page): Sent {
  const sent: Sent = { sends: [] };
  const types = (text: string | null) => {
    const body = JSON.parse(text ?? 'null') as { type: string } | { type: string }[];
    return Array.isArray(body) ? body.map((m) => m.type) : [body.type];
  };
  page.on('request', (request) => {
    if (request.method() === 'POST' && new URL(request.url()).pathname.startsWith('/message/')) sent.sends.push(types(request.postData()));
  });
  page.on('websocket', (socket) => {
    socket.on('framesent', ({ payload }) => sent.sends.push(types(String(payload))));
  });
  return sent;
}

async function peerPage(server: string) {
  const dashboard = stopAfter(startDashboard());
  const peer = await open(dashboard.pageUrl(server));
  await libraryLoaded(peer.page);
  return { ...peer, sent: record(peer.page) };
}

/** Joins with a small fake camera (publish) or without (view), with the library's options. */
function join(page: Page, options: { server: string; session: string; peer: string; role: 'publish' | 'view'; transport: 'sse' | 'ws'; batchMs?: number }) {
  return page.evaluate(async (options) => {
    const media = options.role === 'publish' ? await navigator.mediaDevices.getUserMedia({ video: { width: 160, height: 120 }, audio: false }) : undefined;
    window.me = await window.sb.join({ ...options, media });
  }, options);
}

const connected = (page: Page, remote: string) =>
  page.waitForFunction((remote) => window.me?.peer(remote)?.connectionState === 'connected', remote, { timeout: 30_000, polling: 50 });

/** The sends that carried candidates, and how many candidates the page gathered. */
async function candidateSends(page: Page, sent: Sent, remote: string) {
  const gathered = await page.evaluate((remote) => Object.values(window.me.peer(remote)?.localCandidates ?? {}).reduce((a, b) => a + b, 0), remote);
  const carrying = sent.sends.filter((types) => types.includes('ice-candidate'));
  return { gathered, carrying, candidates: carrying.flat().filter((t) => t === 'ice-candidate').length };
}

describe('ICE candidates in batches, in Chromium', () => {
  for (const transport of ['sse', 'ws'] as const) {
    test(
      `${transport}: candidates that come together leave together, every one of them reaches the other side, and the session connects`,
      async () => {
        const server = stopAfter(startServer());
        // Gathering takes longer than the batch's wait: a wide window here makes every candidate of a
        // gathering round go in one batch, so that the test can tell batching from chance.
        const batchMs = 250;
        const publisher = await peerPage(server.url);
        const viewer = await peerPage(server.url);
        await join(viewer.page, { server: server.url, session: `b-${transport}`, peer: 'v', role: 'view', transport, batchMs });
        await join(publisher.page, { server: server.url, session: `b-${transport}`, peer: 'p', role: 'publish', transport, batchMs });
        await explainOnFailure({ publisher, viewer }, () => Promise.all([connected(viewer.page, 'p'), connected(publisher.page, 'v')]));
        await publisher.page.waitForFunction(() => window.me.peer('v')?.iceGatheringState === 'complete', undefined, { timeout: 15_000 });
        const sent = await candidateSends(publisher.page, publisher.sent, 'v');
        // Every candidate gathered went out, in fewer sends than candidates.
        expect(sent.candidates).toBe(sent.gathered);
        expect(sent.gathered).toBeGreaterThan(1);
        expect(sent.carrying.length).toBeLessThan(sent.gathered);
        expect(sent.carrying.some((types) => types.length > 1)).toBe(true);
        // The other side heard of each of them.
        const heard = await viewer.page.evaluate(() => Object.values(window.me.peer('p')?.remoteCandidates ?? {}).reduce((a, b) => a + b, 0));
        expect(heard).toBe(sent.gathered);
        for (const p of [publisher, viewer]) expect(p.errors).toEqual([]);
      },
      TIMEOUT,
    );
  }

  test(
    'batchMs 0: each candidate is a request of its own, as a seed client sends it, and the session connects',
    async () => {
      const server = stopAfter(startServer());
      const publisher = await peerPage(server.url);
      const viewer = await peerPage(server.url);
      await join(viewer.page, { server: server.url, session: 'single', peer: 'v', role: 'view', transport: 'sse', batchMs: 0 });
      await join(publisher.page, { server: server.url, session: 'single', peer: 'p', role: 'publish', transport: 'sse', batchMs: 0 });
      await explainOnFailure({ publisher, viewer }, () => connected(viewer.page, 'p'));
      await publisher.page.waitForFunction(() => window.me.peer('v')?.iceGatheringState === 'complete', undefined, { timeout: 15_000 });
      const sent = await candidateSends(publisher.page, publisher.sent, 'v');
      expect(sent.carrying.length).toBe(sent.gathered);
      expect(sent.carrying.every((types) => types.length === 1)).toBe(true);
    },
    TIMEOUT,
  );
});
