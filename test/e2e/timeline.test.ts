// A viewer's own time to first frame, in real Chromium against a real server: the connection card shows
// each phase's duration (register → offer → answer → ICE → DTLS → first RTP → decoded, then on screen),
// and `window.switchboard` has the same marks, in order and within the time the test itself saw pass.
import { describe, expect, test } from 'bun:test';
import { TIMELINE_PHASES } from '../../src/client/sdk/timeline';
import type { PeerStatus } from '../../src/client/session';
import { type Running, startServer } from '../helpers';
import { browserTests, type PeerPage, publish } from './browser';

const { open, stopAfter } = browserTests();
const serve = (): Running => stopAfter(startServer({}));
const E2E_TIMEOUT = 90_000;

/** Opens a viewer and waits until its connection with `remote` has a frame on screen; returns what the page says and how long the wait took. */
async function viewUntilShown(url: string, remote: string): Promise<{ viewer: PeerPage; peer: PeerStatus; card: string; openedAt: number; elapsedMs: number }> {
  const openedAt = Date.now();
  const viewer = await open(url);
  const peer = (await (
    await viewer.page.waitForFunction(
      (id) => {
        const p = window.switchboard.peers[id];
        return p?.firstFrameShownMs !== undefined && p.timeline.firstFrame !== undefined ? p : false;
      },
      remote,
      { timeout: 30_000, polling: 50 },
    )
  ).jsonValue()) as PeerStatus;
  const elapsedMs = Date.now() - openedAt;
  const timeline = viewer.page.locator(`article.peer[data-peer="${remote}"] dt:text-is("timeline") + dd`);
  await timeline.filter({ hasText: 'on screen at' }).waitFor({ timeout: 10_000 });
  return { viewer, peer, card: await timeline.innerText(), openedAt, elapsedMs };
}

/** Every phase is there, in order, and the whole fits in what the test saw pass; the card says the same. */
function expectPlausible({ peer, card, openedAt, elapsedMs }: { peer: PeerStatus; card: string; openedAt: number; elapsedMs: number }): void {
  const marks = TIMELINE_PHASES.map((phase) => peer.timeline[phase]);
  for (const mark of marks) expect(mark).toBeNumber();
  const values = marks as number[];
  for (let i = 1; i < values.length; i++) expect(values[i] as number).toBeGreaterThanOrEqual(values[i - 1] as number);
  // The zero is the page's first request, after the page loaded: inside the test's own measure.
  expect(values[0] as number).toBeGreaterThan(0);
  const shown = peer.firstFrameShownMs as number;
  expect(shown).toBeGreaterThan(values[2] as number); // nothing is on screen before the answer went out
  expect(Math.max(shown, values.at(-1) as number)).toBeLessThan(elapsedMs);
  // The page's clock is the machine's: its start lies within the test's measure (the card's wait after it is not).
  expect(peer.timeline.startedAt).toBeGreaterThanOrEqual(openedAt - 1000);
  expect(peer.timeline.startedAt).toBeLessThan(openedAt + elapsedMs);

  // "register +12 · offer +30 · answer +4 · ICE +25 · DTLS +10 · first RTP +8 · decoded +20 = 109 ms · on screen at 115 ms"
  const steps = /^register \+(\d+) · offer \+(\d+) · answer \+(\d+) · ICE \+(\d+) · DTLS \+(\d+) · first RTP \+(\d+) · decoded \+(\d+) = (\d+) ms · on screen at (\d+) ms$/.exec(
    card,
  );
  if (!steps) throw new Error(`the card's timeline reads ${JSON.stringify(card)}`);
  const numbers = steps.slice(1).map(Number);
  expect(numbers[7]).toBe(Math.round(values.at(-1) as number));
  expect(numbers[8]).toBe(Math.round(shown));
  // Each step is that phase's own duration: they add up to the total, give or take rounding.
  expect(Math.abs(numbers.slice(0, 7).reduce((a, b) => a + b, 0) - (numbers[7] as number))).toBeLessThanOrEqual(4);
}

describe('a viewer sees its own time to first frame', () => {
  test(
    'mesh: the card of the publisher shows each phase, ordered, adding up to the first frame',
    async () => {
      const server = serve();
      const publisher = await publish(await open(`${server.url}/?session=tl&peer=pub&role=publish`));
      await publisher.page.waitForFunction(() => window.switchboard.phase === 'live', undefined, { timeout: 20_000 });
      const seen = await viewUntilShown(`${server.url}/?session=tl&peer=v1&role=view`, 'pub');
      expectPlausible(seen);
      expect(seen.peer.timeline.registered).toBeDefined();
      for (const p of [publisher, seen.viewer]) expect(p.errors).toEqual([]);
    },
    E2E_TIMEOUT,
  );

  test(
    'relay: the card of the server shows each phase of the connection the server offered',
    async () => {
      const server = serve();
      const publisher = await publish(await open(`${server.url}/?session=tlr&peer=pub&role=publish&mode=relay`));
      await publisher.page.waitForFunction(() => (window.switchboard.peers.switchboard?.framesSent ?? 0) > 0, undefined, { timeout: 30_000, polling: 100 });
      const seen = await viewUntilShown(`${server.url}/?session=tlr&peer=v1&role=view`, 'switchboard');
      expectPlausible(seen);
      for (const p of [publisher, seen.viewer]) expect(p.errors).toEqual([]);
    },
    E2E_TIMEOUT,
  );
});
