// The fleet view in Chromium watching 12 sessions at once, 12 publishers (one page on another origin,
// one small fake camera, the client library): over SSE on HTTP/2 (TLS), over WebSocket without TLS, and,
// to show why one of the two is needed, over SSE on HTTP/1.1, where a browser holds 6 connections to a
// server and the tiles past them never get their events.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import type { FleetStatus } from '../../src/client/fleet/fleet';
import type * as Library from '../../src/client/sdk/index';
import type { Session } from '../../src/client/sdk/switchboard';
import { selfSignedCertificate } from '../fixtures/certificate';
import { type Running, startServer } from '../helpers';
import { browserTests, type PeerPage } from './browser';
import { libraryLoaded, startDashboard } from './dashboard';

declare global {
  interface Window {
    sb: typeof Library;
    cameras: Record<string, Session>;
    camera: MediaStream;
  }
}

const { open, stopAfter } = browserTests(undefined, ['--ignore-certificate-errors']);
const SESSIONS = Array.from({ length: 12 }, (_, i) => `cam-${i + 1}`);
const TIMEOUT = 120_000;

const dir = mkdtempSync(join(tmpdir(), 'switchboard-fleet-'));
let tls: { cert: string; key: string };
beforeAll(() => {
  const { cert, key } = selfSignedCertificate(dir);
  tls = { cert, key };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** One page publishing a 160×120 fake camera in every session, each over its own WebSocket. */
async function publishers(server: string): Promise<PeerPage> {
  const dashboard = stopAfter(startDashboard());
  const peer = await open(dashboard.pageUrl(server));
  await libraryLoaded(peer.page);
  await peer.page.evaluate(
    async ({ server, sessions }) => {
      const media = await navigator.mediaDevices.getUserMedia({ video: { width: 160, height: 120, frameRate: 10 }, audio: false });
      window.camera = media;
      window.cameras = {};
      await Promise.all(
        sessions.map(async (session) => {
          window.cameras[session] = await window.sb.join({ server, session, peer: 'cam', role: 'publish', media, transport: 'ws', statsIntervalMs: 0 });
        }),
      );
    },
    { server, sessions: SESSIONS },
  );
  return peer;
}

const fleetStatus = (page: Page) => page.evaluate(() => window.fleet);

/** Waits until every tile is live: decoding frames shown in its <video>, with a candidate pair and a bitrate. */
async function allLive(page: Page): Promise<FleetStatus> {
  try {
    await page.waitForFunction(
      (count) => {
        const tiles = Object.values(window.fleet.tiles);
        const videos = [...document.querySelectorAll<HTMLVideoElement>('.tile video')];
        return (
          tiles.length === count &&
          tiles.every((t) => t.state === 'live' && t.framesDecoded > 0 && t.pair && t.kbps > 0) &&
          videos.length === count &&
          videos.every((v) => v.videoWidth > 0)
        );
      },
      SESSIONS.length,
      { timeout: 60_000, polling: 250 },
    );
  } catch (e) {
    throw new Error(`${(e as Error).message.split('\n')[0]}\n${JSON.stringify(await fleetStatus(page), null, 1)}`);
  }
  return fleetStatus(page);
}

const fleetUrl = (server: Running, extra = '') => `${server.url}/fleet?sessions=${SESSIONS.join(',')}${extra}`;

describe('the fleet view, 12 sessions in one tab', () => {
  test(
    'over SSE with TLS: the page comes over HTTP/2 and every tile decodes video; a camera that leaves and comes back is live again by itself',
    async () => {
      const server = stopAfter(startServer({}, {}, { tls, http2: true }));
      const cameras = await publishers(server.url);
      const fleet = await open(fleetUrl(server));
      const seen = await allLive(fleet.page);
      expect(seen.protocol).toBe('h2');
      expect(seen.transport).toBe('sse');
      expect(seen.notice).toBeUndefined();
      for (const tile of Object.values(seen.tiles)) expect(tile.pair).toBe('host-host');
      expect(await fleet.page.textContent('#summary')).toBe('12 of 12 live · events over Server-Sent Events (h2)');

      // A camera goes away and comes back: its tile waits for it, then is live again by itself.
      await cameras.page.evaluate(() => window.cameras['cam-3']?.leave());
      await fleet.page.waitForFunction(() => window.fleet.tiles['cam-3']?.state === 'waiting', undefined, { timeout: 15_000, polling: 100 });
      expect(await fleet.page.textContent('.tile[data-session="cam-3"] .badge')).toBe('waiting for the camera');
      await cameras.page.evaluate(async (server) => {
        window.cameras['cam-3'] = await window.sb.join({ server, session: 'cam-3', peer: 'cam', role: 'publish', media: window.camera, transport: 'ws', statsIntervalMs: 0 });
      }, server.url);
      await allLive(fleet.page);
      expect(fleet.errors).toEqual([]);
    },
    TIMEOUT,
  );

  test(
    'over WebSocket without TLS, the default there: sessions typed into the page, every tile decodes video, and the grid fits a phone',
    async () => {
      const server = stopAfter(startServer());
      await publishers(server.url);
      const fleet = await open(`${server.url}/fleet`);
      expect(await fleet.page.textContent('#summary')).toBe('Type the sessions to watch, separated by commas.');
      await fleet.page.fill('#sessions', SESSIONS.join(', '));
      await fleet.page.click('#pick button');
      expect(new URL(fleet.page.url()).search).toBe(`?sessions=${SESSIONS.join(',')}`);
      const seen = await allLive(fleet.page);
      expect(seen.protocol).toBe('http/1.1');
      expect(seen.transport).toBe('ws');
      expect(seen.notice).toBeUndefined();

      await fleet.page.setViewportSize({ width: 390, height: 844 });
      // Two columns, nothing wider than the screen.
      const layout = await fleet.page.evaluate(() => ({
        scrollWidth: document.documentElement.scrollWidth,
        lefts: new Set([...document.querySelectorAll('.tile')].map((t) => t.getBoundingClientRect().left)).size,
      }));
      expect(layout).toEqual({ scrollWidth: 390, lefts: 2 });
      const shot = join(mkdtempSync(join(tmpdir(), 'switchboard-fleet-shot-')), 'fleet-390x844.png');
      await fleet.page.screenshot({ path: shot });
      console.log(`screenshot of the fleet view at 390×844: ${shot}`);
      expect(fleet.errors).toEqual([]);
    },
    TIMEOUT,
  );

  test(
    'over SSE on HTTP/1.1 without TLS: tiles past the browser’s 6 connections get no events, and the page says why',
    async () => {
      const server = stopAfter(startServer());
      await publishers(server.url);
      const fleet = await open(fleetUrl(server, '&transport=sse'));
      const first = await fleetStatus(fleet.page);
      expect(first.protocol).toBe('http/1.1');
      expect(first.transport).toBe('sse');
      expect(first.notice).toContain('at most 6 connections');
      expect(await fleet.page.textContent('#notice')).toContain('Open the fleet view over HTTPS (the server then speaks HTTP/2), or drop transport=sse to use WebSockets.');

      // Every tile ends either with its stream open or told that no connection is free.
      await fleet.page.waitForFunction(
        (count) => {
          const tiles = Object.values(window.fleet.tiles);
          return tiles.length === count && tiles.every((t) => t.stream === 'open' || t.state === 'stalled');
        },
        SESSIONS.length,
        { timeout: 60_000, polling: 250 },
      );
      const seen = await fleetStatus(fleet.page);
      const tiles = Object.values(seen.tiles);
      const open6 = tiles.filter((t) => t.stream === 'open');
      const stalled = tiles.filter((t) => t.state === 'stalled');
      console.log(`HTTP/1.1 + SSE: ${open6.length} streams open, ${stalled.length} tiles stalled, ${tiles.filter((t) => t.framesDecoded > 0).length} decoding`);
      expect(open6.length).toBeLessThanOrEqual(6);
      expect(stalled.length).toBeGreaterThanOrEqual(SESSIONS.length - 6);
      for (const tile of stalled) {
        expect(tile.stream).not.toBe('open');
        expect(tile.framesDecoded).toBe(0);
        expect(tile.why).toBe("No free connection to the server: over HTTP/1.1 the browser opens at most 6, and the other cameras' event streams hold them.");
      }
      const badges = await fleet.page.locator('.tile[data-state="stalled"] .badge').allTextContents();
      expect(badges.length).toBe(stalled.length);
      expect(new Set(badges)).toEqual(new Set(['no free connection']));
    },
    TIMEOUT,
  );
});
