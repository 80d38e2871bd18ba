// WHIP and WHEP in real Chromium with a third-party client: medooze's whip-whep from npm, on a page of
// another origin (CORS for real). The fake camera publishes with trickle ICE through PATCH; a WHEP page
// and an SSE viewer (the seed flow, the project's own client page) decode the same upload.
import { describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { browserTests, waitVideo } from '../e2e/browser';
import { type Running, startServer } from '../helpers';

const { open, stopAfter } = browserTests();

/** A page of its own origin that loads the WHIP/WHEP clients, bundled once. */
async function servePage(): Promise<{ url: string; stop(): Promise<void> }> {
  const built = await Bun.build({ entrypoints: [join(import.meta.dir, 'page', 'client.ts')], target: 'browser', format: 'esm' });
  if (!built.success || !built.outputs[0]) throw new Error(`bundling the page failed: ${built.logs.join('\n')}`);
  const script = await built.outputs[0].text();
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: (request) =>
      new URL(request.url).pathname === '/client.js'
        ? new Response(script, { headers: { 'content-type': 'text/javascript' } })
        : new Response('<!doctype html><title>WHIP/WHEP</title><script type="module" src="/client.js"></script>', { headers: { 'content-type': 'text/html' } }),
  });
  return { url: `http://127.0.0.1:${server.port}/`, stop: () => server.stop(true) };
}

interface Stats {
  videoOutbound: number;
  framesDecoded: number;
  connectionState: string | undefined;
  remoteUfrag: string | undefined;
}

declare global {
  interface Window {
    clients: { publish(url: string): Promise<void>; play(url: string): Promise<void>; stats(): Promise<Stats>; latest?: Stats; whip?: { restart(): Promise<void> } };
  }
}

const stats = (page: Page) => page.evaluate(() => window.clients.stats());

/** Waits until the page decoded `frames` more video frames than `from`. */
async function decodes(page: Page, from: number, frames = 30): Promise<number> {
  await page.waitForFunction(([start, more]) => (window.clients.latest?.framesDecoded ?? 0) >= start + more, [from, frames] as const, { timeout: 45_000, polling: 250 });
  return (await stats(page)).framesDecoded;
}

async function clientPage(pageUrl: string): Promise<Page> {
  const { page } = await open(pageUrl);
  await page.waitForFunction(() => window.clients !== undefined);
  return page;
}

const TIMEOUT = 150_000;

describe('whip-whep in Chromium', () => {
  test(
    'publishes with trickle ICE through PATCH; a WHEP page and an SSE viewer decode the same upload; one outbound video stream; an ICE restart through PATCH keeps video flowing',
    async () => {
      const server: Running = stopAfter(startServer({ iceUrls: ['stun:127.0.0.1:3478'], corsOrigins: ['*'] }));
      const pageServer = stopAfter(await servePage());

      const publisher = await clientPage(pageServer.url);
      const patches: { status: number; ifMatch: string | undefined }[] = [];
      publisher.on('response', (response) => {
        if (response.request().method() === 'PATCH') patches.push({ status: response.status(), ifMatch: response.request().headers()['if-match'] });
      });
      await publisher.evaluate((url) => window.clients.publish(url), `${server.url}/whip/road?peer=dashcam`);
      await publisher.waitForFunction(() => window.clients.latest?.connectionState === 'connected', undefined, { timeout: 45_000, polling: 250 });
      // Its candidates went by PATCH, each answered 204, with the ETag of the POST.
      expect(patches.length).toBeGreaterThan(0);
      expect(patches.every((p) => p.status === 204 && p.ifMatch?.startsWith('"'))).toBe(true);

      const player = await clientPage(pageServer.url);
      await player.evaluate((url) => window.clients.play(url), `${server.url}/whep/road?peer=screen`);
      const { page: seed } = await open(`${server.url}/?session=road&peer=sse-viewer&role=view`);
      await waitVideo(seed, 'switchboard', 60_000);
      let played = await decodes(player, 0);
      expect((await stats(publisher)).videoOutbound).toBe(1);
      const snapshot = server.signalling.snapshot('road') as { peers: { id: string; role: string }[] };
      expect(snapshot.peers.map((p) => [p.id, p.role])).toEqual([
        ['dashcam', 'publisher'],
        ['screen', 'viewer'],
        ['sse-viewer', 'viewer'],
      ]);

      // ICE restart from the publisher: If-Match "*", 200 with the server's new credentials.
      const before = (await stats(publisher)).remoteUfrag;
      await publisher.evaluate(() => window.clients.whip?.restart());
      await publisher.waitForFunction((old) => window.clients.latest?.remoteUfrag !== old, before, { timeout: 20_000, polling: 100 });
      expect(patches.some((p) => p.ifMatch === '*' && p.status === 200)).toBe(true);
      played = await decodes(player, played);
      const seen = (await waitVideo(seed, 'switchboard')).framesDecoded;
      await seed.waitForFunction((from) => (window.switchboard.peers.switchboard?.framesDecoded ?? 0) >= from + 30, seen, { timeout: 45_000, polling: 250 });
      expect((await stats(publisher)).connectionState).toBe('connected');
      expect(played).toBeGreaterThanOrEqual(60);
    },
    TIMEOUT,
  );
});
