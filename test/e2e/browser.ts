// Debian's Chromium driven by playwright-core: one browser, one context per peer (separate storage,
// like separate people). Never a downloaded browser.
import { afterAll, afterEach, beforeAll } from 'bun:test';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import type { ClientStatus, PeerStatus } from '../../src/client/session';

/** Debian's Chromium, as a user's browser runs: ahead of nothing, behind nothing. */
export const DEBIAN_CHROMIUM = '/usr/bin/chromium';
/** Debian's Chromium through a launcher (test/e2e/chromium) that keeps it behind the servers under test. */
export const CHROMIUM = new URL('./chromium', import.meta.url).pathname;

/** Headless, no sandbox (root in CI), fake camera and microphone granted without a prompt. */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  // Docker gives /dev/shm 64 MB, too little for a few pages with video: use /tmp instead.
  '--disable-dev-shm-usage',
];

/**
 * `flags` are added to CHROMIUM_FLAGS (`--ignore-certificate-errors` for a self-signed certificate, say).
 * Tests run CHROMIUM; a benchmark of what a user waits for runs DEBIAN_CHROMIUM, the browser's own work
 * being part of what it measures.
 */
export function launchBrowser(flags: string[] = [], executablePath = CHROMIUM): Promise<Browser> {
  return chromium.launch({ executablePath, args: [...CHROMIUM_FLAGS, ...flags], headless: true, timeout: 30_000 });
}

export interface PeerPage {
  context: BrowserContext;
  page: Page;
  /** Console errors and uncaught exceptions of the page: a test fails on any. */
  errors: string[];
  close(): Promise<void>;
}

/** A new context (its own storage and camera permission) with one page at `url`; `init` runs before the page's scripts. */
export async function openPeer(browser: Browser, url: string, init?: string): Promise<PeerPage> {
  const context = await browser.newContext({ viewport: { width: 900, height: 900 } });
  const page = await context.newPage();
  if (init) await page.addInitScript(init);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  return { context, page, errors, close: () => context.close() };
}

/**
 * What a file of browser tests shares: one Chromium for the whole file; per test, the pages it opened
 * (`open`) and what it started (`stopAfter`), closed after it whatever happened: the pages first, then
 * the rest in reverse order. `init` runs in every page before its scripts.
 */
export function browserTests(init?: string, flags: string[] = []) {
  let browser: Browser | undefined;
  const pages: PeerPage[] = [];
  const started: { stop(): Promise<unknown> }[] = [];
  beforeAll(async () => {
    browser = await launchBrowser(flags);
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });
  afterEach(async () => {
    // A test may have closed a page itself (a viewer cut off).
    await Promise.all(pages.splice(0).map((p) => p.close().catch(() => undefined)));
    for (const s of started.splice(0).reverse()) await s.stop();
  });
  return {
    async open(url: string): Promise<PeerPage> {
      if (!browser) throw new Error('the browser did not start');
      const peer = await openPeer(browser, url, init);
      pages.push(peer);
      return peer;
    },
    stopAfter<T extends { stop(): Promise<unknown> }>(thing: T): T {
      started.push(thing);
      return thing;
    },
  };
}

/**
 * Presses Start stream on a page opened with `role=publish`: a link fills in the form, but only a click
 * turns the camera on and registers the publisher.
 */
export async function publish(peer: PeerPage): Promise<PeerPage> {
  await peer.page.waitForFunction(() => window.switchboard.phase === 'ready', undefined, { timeout: 10_000, polling: 50 });
  await peer.page.click('#publish');
  // Registered (or refused) before the caller goes on: a viewer opened next must not come first and
  // create the session itself (a mesh session, where the publisher asked for a relay one).
  await peer.page.waitForFunction(() => !['ready', 'starting'].includes(window.switchboard.phase), undefined, { timeout: 20_000, polling: 20 });
  return peer;
}

/** `window.switchboard`, the client's state. */
export function status(page: Page): Promise<ClientStatus> {
  return page.evaluate(() => window.switchboard);
}

/** Runs `wait`; when it fails, the error carries the page's signalling log, newest first. */
async function explained<T>(page: Page, what: string, wait: () => Promise<T>): Promise<T> {
  try {
    return await wait();
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message.split('\n')[0]}\n${await report(page)}`);
  }
}

/** A page's URL, state and newest signalling log lines: what a failed wait needs to be understood. */
async function report(page: Page): Promise<string> {
  const log = await page
    .locator('#log')
    .innerText({ timeout: 2000 })
    .catch(() => '(no log)');
  const state = await page.evaluate(() => JSON.stringify(window.switchboard)).catch(() => '(no state)');
  return `${page.url()}\nstate: ${state}\nlog:\n${log.split('\n').slice(0, 60).join('\n')}`;
}

/** Runs `wait`; when it fails, the error carries the report of every page named. */
export async function explainOnFailure<T>(pages: Record<string, { page: Page }>, wait: () => Promise<T>): Promise<T> {
  try {
    return await wait();
  } catch (e) {
    const reports = await Promise.all(Object.entries(pages).map(async ([name, { page }]) => `--- ${name}: ${await report(page)}`));
    throw new Error(`${(e as Error).message.split('\n')[0]}\n${reports.join('\n')}`);
  }
}

/** Waits until the page's connection with `remoteId` is `connected`. */
export async function waitConnected(page: Page, remoteId: string, timeout = 30_000): Promise<PeerStatus> {
  await explained(page, `connected to ${remoteId}`, () =>
    page.waitForFunction((id) => window.switchboard.peers[id]?.connectionState === 'connected', remoteId, { timeout, polling: 100 }),
  );
  return (await status(page)).peers[remoteId] as PeerStatus;
}

/**
 * Waits until video from `remoteId` is decoded (inbound-rtp framesDecoded > 0) and shown (the video
 * element has a width), and returns both numbers.
 */
export async function waitVideo(page: Page, remoteId: string, timeout = 30_000): Promise<{ framesDecoded: number; videoWidth: number }> {
  const handle = await explained(page, `video from ${remoteId}`, () =>
    page.waitForFunction(
      (id) => {
        const video = document.querySelector<HTMLVideoElement>(`video[data-peer="${CSS.escape(id)}"]`);
        const framesDecoded = window.switchboard.peers[id]?.framesDecoded ?? 0;
        return framesDecoded > 0 && video && video.videoWidth > 0 ? { framesDecoded, videoWidth: video.videoWidth } : false;
      },
      remoteId,
      { timeout, polling: 100 },
    ),
  );
  return (await handle.jsonValue()) as { framesDecoded: number; videoWidth: number };
}

/** Waits until the page has connections with exactly `ids`, each in `state`. */
export async function waitPeers(page: Page, ids: string[], state: RTCPeerConnectionState, timeout = 30_000): Promise<Record<string, PeerStatus>> {
  await explained(page, `peers ${ids.join(', ')} ${state}`, () =>
    page.waitForFunction(
      ([want, wantState]) => {
        const peers = window.switchboard.peers;
        const have = Object.keys(peers).sort();
        const sorted = [...(want as string[])].sort();
        return have.length === sorted.length && have.every((id, i) => id === sorted[i] && peers[id]?.connectionState === wantState);
      },
      [ids, state] as const,
      { timeout, polling: 100 },
    ),
  );
  return (await status(page)).peers;
}
