// Time to first frame, as a browser sees it: Chromium viewers join a live publisher one after another, and
// each measures from its first request to its first video frame on screen (requestVideoFrameCallback),
// phase by phase. Four systems in one run, each on a fresh server process of its own:
//   switchboard mesh   the served client (`/?session=S&peer=vN&role=view`); the publisher (the same page,
//                      role=publish, Start stream pressed) offers to each viewer. First request: POST /register.
//   switchboard relay  the same in a relay session (`mode=relay`): the publisher streams to the server before
//                      the first viewer comes, and the server offers to each viewer. Its server process has
//                      had no relay session before, so its first viewer is reported on its own (cold),
//                      with the first viewers of a few more fresh processes (one sample alone moves
//                      with the page's own phases by more than the server could add).
//   switchboard WHEP   a standard WHEP player (bench/pages/whep-client.ts, on another origin) of the same kind
//                      of relay session: the player offers at once, the server answers in the POST's
//                      response. First mark: the page's script starts (it makes its offer, then POSTs).
//   PeerJS             PeerJS's browser client (`peerjs`) against its server (`peer`), bench/pages/peerjs-client.ts:
//                      the viewer calls the publisher with a receive-only offer. First request: its WebSocket.
// The phases (src/client/sdk/timeline.ts, the same code on every page): registered (POST /register answered,
// PeerJS's OPEN) → offer (received; PeerJS's viewer sends it) → answer (sent; PeerJS's viewer receives it) →
// ICE connected → DTLS connected → first RTP (inbound-rtp packetsReceived > 0, getStats every 10 ms) →
// first frame on screen. Same fake camera (640×480, with audio) everywhere.
//
// The systems take turns, each with its own server, in rounds: a publisher of one system goes live, a few
// viewers join it one after another, the publisher leaves, and the next system's turn comes; so that a
// busy moment of the machine weighs on all alike, and one publisher encodes at a time. Each
// viewer has its own browser context and is closed once measured, so that a publisher sends to one
// viewer at a time and every viewer joins the same conditions. The servers run on CPU 0; Chromium may
// use both CPUs, as a viewer's browser has a machine of its own: pinned to CPU 1 with the harness (as
// other benchmarks pin their load), a browser process, its GPU and network processes, a renderer per
// page and the publisher's encoder share one CPU, and every phase a page handles took 2–3 × as long, the
// same for every system.
//
//   bun bench/first-frame.ts            # 2 rounds of 5 viewers per system; about a minute
//   bun bench/first-frame.ts --smoke    # 1 round of 2 viewers per system; seconds
//   bun bench/first-frame.ts --baseline ../other-checkout --rounds 4
//                                       # the served client of another checkout too, in the same rounds
//   bun bench/first-frame.ts --rtt 100  # every server behind a proxy that holds each TCP chunk 50 ms each
//                                       # way (test/client/tcp-proxy.ts): the signalling of a real network's
//                                       # round trip, the media (UDP) still on loopback
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { PeerTimeline, TimelinePhase } from '../src/client/sdk/switchboard';
import type { ClientStatus } from '../src/client/session';
import { startTcpProxy } from '../test/client/tcp-proxy';
import { DEBIAN_CHROMIUM, launchBrowser } from '../test/e2e/browser';
import type { BenchPageState } from './pages/peerjs-client';
import { onEveryCpu, pinLoad, type ServerProcess, startServer } from './process';
import { quantile } from './stats';
import { formatRows, type Row } from './table';

const BENCH = 'Time to first frame (Chromium viewers)';
/** The benchmark's name in the table: with `--rtt`, the round trip it was measured over. */
const benchName = (rttMs: number) => (rttMs ? `Time to first frame (Chromium viewers, signalling over a ${rttMs} ms round trip)` : BENCH);
const here = import.meta.dir;
/** A viewer with no frame on screen by then counts as failed. */
const VIEWER_TIMEOUT_MS = 20_000;
/** Fresh relay server processes, after the rounds, each with a publisher and one viewer: more first viewers of a process. */
const COLD_PROCESSES = 3;
/** The goals: a relay viewer's p50, and relay against mesh. */
const RELAY_P50_GOAL_MS = 250;
const RELAY_TO_MESH_GOAL = 0.6;

/** The phases in order, the last being the frame on screen; how the table names them. */
const PHASES: readonly (TimelinePhase | 'shown')[] = ['registered', 'offer', 'answer', 'iceConnected', 'dtlsConnected', 'firstPacket', 'shown'];
const PHASE_NAMES: Record<(typeof PHASES)[number], string> = {
  registered: 'register',
  offer: 'offer',
  answer: 'answer',
  iceConnected: 'ICE',
  dtlsConnected: 'DTLS',
  firstPacket: 'first RTP',
  firstFrame: 'decoded',
  shown: 'first frame',
};

/** One viewer's marks: ms after its first request. */
interface Measured {
  timeline: PeerTimeline;
  shownMs: number;
}

interface System {
  subject: string;
  server(): Promise<ServerProcess>;
  /**
   * Opens the publisher of `round` (a session, or a PeerJS id, of its own) and resolves once it streams
   * (to the server, in a relay session) or is ready for calls.
   */
  publish(browser: Browser, server: ServerProcess, round: number): Promise<BrowserContext>;
  /** One viewer of `round`'s publisher, from opening its page to its first frame on screen. */
  view(page: Page, server: ServerProcess, index: number, round: number): Promise<Measured>;
}

/** The switchboard server of the checkout at `root` (this one by default). */
const switchboardServer = (root = join(here, '..')) => startServer('switchboard', [process.execPath, join(root, 'bench/servers/switchboard.ts')], { pin: true });
const session = (round: number) => `first-frame-${round}`;

/** The served client's publisher: Start stream pressed, live; in a relay session, sending to the server. */
async function switchboardPublisher(browser: Browser, server: ServerProcess, round: number, relay: boolean): Promise<BrowserContext> {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${server.base}/?session=${session(round)}&peer=pub&role=publish${relay ? '&mode=relay' : ''}`);
  await page.waitForFunction(() => window.switchboard.phase === 'ready', undefined, { timeout: 10_000, polling: 50 });
  await page.click('#publish');
  await page.waitForFunction((relayed) => window.switchboard.phase === 'live' && (!relayed || (window.switchboard.peers.switchboard?.framesSent ?? 0) > 0), relay, {
    timeout: 20_000,
    polling: 50,
  });
  return context;
}

/**
 * What `read` returns in `page` once it is not false, read every 50 ms. Not page.waitForFunction: its
 * first call installs Playwright's injected script (330 KB) into the page, about 30 ms of the page's
 * main thread in the middle of the join it measures; a plain evaluate costs the page a few ms once.
 */
async function untilRead<T, A>(page: Page, read: (arg: A) => T | false, arg: A): Promise<T> {
  const deadline = performance.now() + VIEWER_TIMEOUT_MS;
  for (;;) {
    const value = await page.evaluate(read as (arg: unknown) => T | false, arg as unknown);
    if (value !== false) return value as T;
    if (performance.now() > deadline) throw new Error(`no first frame within ${VIEWER_TIMEOUT_MS} ms`);
    await Bun.sleep(50);
  }
}

async function switchboardViewer(page: Page, server: ServerProcess, index: number, round: number, remote: string): Promise<Measured> {
  await page.goto(`${server.base}/?session=${session(round)}&peer=v${index}&role=view`);
  return untilRead(
    page,
    (id): Measured | false => {
      const peer = (window.switchboard as ClientStatus | undefined)?.peers[id];
      return peer?.firstFrameShownMs !== undefined && peer.timeline.firstPacket !== undefined ? { timeline: peer.timeline, shownMs: peer.firstFrameShownMs } : false;
    },
    remote,
  );
}

/** The pages of the systems that are not the served client (PeerJS, WHEP), bundled once; served from this process on an origin of its own. */
async function benchPages(): Promise<{ origin: string; stop(): void }> {
  const scripts = new Map<string, string>();
  for (const name of ['peerjs-client', 'whep-client']) {
    const built = await Bun.build({ entrypoints: [join(here, `pages/${name}.ts`)], target: 'browser', minify: true });
    if (!built.success || !built.outputs[0]) throw new Error(`bundling the ${name} page failed: ${built.logs.join('\n')}`);
    scripts.set(`/${name}.js`, await built.outputs[0].text());
  }
  const html = (name: string) => `<!doctype html><meta charset="utf-8"><title>first frame</title><body><script type="module" src="/${name}.js"></script>`;
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: (request) => {
      const { pathname } = new URL(request.url);
      const script = scripts.get(pathname);
      if (script) return new Response(script, { headers: { 'content-type': 'text/javascript' } });
      return new Response(html(pathname === '/whep' ? 'whep-client' : 'peerjs-client'), { headers: { 'content-type': 'text/html' } });
    },
  });
  return { origin: `http://127.0.0.1:${server.port}`, stop: () => void server.stop(true) };
}

/** The page state a bench page keeps in `window.bench`, read until the first frame is on screen. */
async function benchPageViewer(page: Page, url: string, what: string): Promise<Measured> {
  await page.goto(url);
  const result = await untilRead(
    page,
    (): Measured | { error: string } | false => {
      const state = window.bench;
      if (state?.phase === 'failed') return { error: state.error ?? 'failed' };
      return state?.firstFrameShownMs !== undefined && state.timeline?.firstPacket !== undefined ? { timeline: state.timeline, shownMs: state.firstFrameShownMs } : false;
    },
    undefined,
  );
  if ('error' in result) throw new Error(`${what}: ${result.error}`);
  return result;
}

/**
 * A standard WHEP player (bench/pages/whep-client.ts) of the relay session's publisher: the player
 * offers, the server answers in the POST's response. Its page is on another origin than the server,
 * as a dashboard's often is: a CORS preflight comes first.
 */
function whepSystem(pages: { origin: string }): System {
  return {
    subject: 'switchboard WHEP',
    server: switchboardServer,
    publish: (browser, server, round) => switchboardPublisher(browser, server, round, true),
    view: (page, server, index, round) =>
      benchPageViewer(page, `${pages.origin}/whep?server=${encodeURIComponent(server.base)}&session=${session(round)}&peer=w${index}`, 'WHEP player'),
  };
}

function peerjsSystem(pages: { origin: string }): System {
  const url = (server: ServerProcess, query: string) => {
    const { hostname, port } = new URL(server.base);
    return `${pages.origin}/peerjs?host=${hostname}&port=${port}&${query}`;
  };
  const pageState = (page: Page) => page.evaluate(() => window.bench as BenchPageState);
  return {
    subject: 'PeerJS',
    // Under Node, its own runtime, when there is one.
    server: () => startServer('PeerJS', Bun.which('node') ? ['node', join(here, 'servers/peerjs.mjs')] : [process.execPath, join(here, 'servers/peerjs.mjs')], { pin: true }),
    async publish(browser, server, round) {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(url(server, `role=publish&id=pub${round}`));
      await page.waitForFunction(() => window.bench?.phase !== 'starting', undefined, { timeout: 20_000, polling: 50 });
      const state = await pageState(page);
      if (state.phase !== 'live') throw new Error(`the PeerJS publisher failed: ${state.error}`);
      return context;
    },
    view: (page, server, index, round) => benchPageViewer(page, url(server, `role=view&id=v${index}&publisher=pub${round}`), 'PeerJS viewer'),
  };
}

/**
 * The served client in mesh and relay sessions, from the server (and so the page) of the checkout at
 * `root`; `label` names another checkout's, a baseline measured in the same run.
 */
function switchboardSystems(root?: string, label = ''): System[] {
  return [
    {
      subject: `switchboard mesh${label}`,
      server: () => switchboardServer(root),
      publish: (browser, server, round) => switchboardPublisher(browser, server, round, false),
      view: (page, server, index, round) => switchboardViewer(page, server, index, round, 'pub'),
    },
    {
      subject: `switchboard relay${label}`,
      server: () => switchboardServer(root),
      publish: (browser, server, round) => switchboardPublisher(browser, server, round, true),
      view: (page, server, index, round) => switchboardViewer(page, server, index, round, 'switchboard'),
    },
  ];
}

/**
 * Each phase's own duration in one viewer's timeline: from the mark before it (or the first request).
 * A mark is when the page got to handle the event, which a busy page does late, while the frame's
 * presentation time is exact: a mark later than the one after it is taken as that one (the packet was
 * in before the frame was on screen).
 */
function phaseDurations({ timeline, shownMs }: Measured): Partial<Record<(typeof PHASES)[number], number>> {
  const marks: [(typeof PHASES)[number], number][] = [];
  let bound = shownMs;
  for (const phase of [...PHASES].reverse()) {
    const at = phase === 'shown' ? shownMs : timeline[phase];
    if (at === undefined) continue;
    bound = Math.min(at, bound);
    marks.unshift([phase, bound]);
  }
  const durations: Partial<Record<(typeof PHASES)[number], number>> = {};
  let previous = 0;
  for (const [phase, at] of marks) {
    durations[phase] = at - previous;
    previous = at;
  }
  return durations;
}

/** The p50 of each phase's duration, as a note: "register 4 · offer 21 · … ms". */
function phaseMedians(measured: readonly Measured[]): string {
  const all = measured.map(phaseDurations);
  const parts = PHASES.map((phase) => {
    const values = all.map((d) => d[phase]).filter((v): v is number => v !== undefined);
    return values.length ? `${PHASE_NAMES[phase]} ${Math.round(quantile(values, 0.5))}` : undefined;
  });
  return `p50 by phase: ${parts.filter(Boolean).join(' · ')} ms`;
}

/** What one system's viewers gave. */
interface Outcome {
  measured: Measured[];
  failed: number;
  firstError?: string;
}

/** One viewer of `system`, in a context of its own that is closed once it is measured. */
async function measureViewer(system: System, browser: Browser, server: ServerProcess, index: number, round: number, outcome: Outcome, log: (line: string) => void): Promise<void> {
  const context = await browser.newContext();
  try {
    const result = await system.view(await context.newPage(), server, index, round);
    outcome.measured.push(result);
    log(`${system.subject} viewer ${index}: ${Math.round(result.shownMs)} ms (${phaseMedians([result]).slice('p50 by phase: '.length)})`);
  } catch (e) {
    outcome.failed++;
    const message = (e as Error).message.split('\n')[0];
    outcome.firstError ??= message;
    log(`${system.subject} viewer ${index} failed: ${message}`);
  } finally {
    await context.close();
  }
}

/** Joining viewers the relay server sent its keyframe cache to, from its own /metrics; NaN when it cannot say. */
async function cacheReplays(server: ServerProcess): Promise<number> {
  try {
    const text = await (await fetch(`${server.base}/metrics`)).text();
    return Number(/^switchboard_relay_keyframe_cache_replays_total (\S+)$/m.exec(text)?.[1] ?? Number.NaN);
  } catch {
    return Number.NaN; // the server is gone: the viewers' rows say why
  }
}

/** The rows of one system; a relay's first viewer (the first of its process) also on its own. */
function systemRows(bench: string, system: System, { measured, failed, firstError }: Outcome, cold?: Outcome): Row[] {
  const totals = measured.map((m) => m.shownMs);
  const count = `${measured.length} viewers${failed ? `, ${failed} failed: ${firstError}` : ''}`;
  const row = (figure: string, value: number, extra: Partial<Row> = {}): Row => ({ bench, subject: system.subject, figure, value, unit: 'ms', ...extra });
  const relay = system.subject === 'switchboard relay';
  const rows = [
    row('p50, first request → first frame', quantile(totals, 0.5), { note: phaseMedians(measured), goal: relay ? { op: '<=', value: RELAY_P50_GOAL_MS } : undefined }),
    row('p95', quantile(totals, 0.95), { note: count }),
    row('max', totals.length ? Math.max(...totals) : Number.NaN),
  ];
  if (relay) {
    // The first viewer of every fresh process: this run's, and those of the processes started for it.
    const firsts = [...measured.slice(0, 1), ...(cold?.measured ?? [])];
    const coldFailed = cold?.failed ? `; ${cold.failed} failed: ${cold.firstError}` : '';
    rows.push(
      row(
        'first viewer of the process (cold), p50',
        quantile(
          firsts.map((m) => m.shownMs),
          0.5,
        ),
        {
          goal: { op: '<=', value: RELAY_P50_GOAL_MS },
          note: firsts.length ? `${firsts.length} fresh processes: ${firsts.map((m) => Math.round(m.shownMs)).join(', ')} ms; ${phaseMedians(firsts)}${coldFailed}` : undefined,
        },
      ),
      row('p50 of the other viewers', quantile(totals.slice(1), 0.5)),
    );
  }
  return rows;
}

export interface FirstFrameOptions {
  smoke: boolean;
  log: (line: string) => void;
  /** Rounds of five viewers per system (default 2). */
  rounds?: number;
  /**
   * Another checkout of switchboard (its own `bun install` done, or node_modules linked): its server
   * and page are measured too, in the same rounds, as `switchboard mesh (baseline <dir>)` and `… relay …`.
   * A change's effect on the page, where one run's figures move with the machine's hour, is read off
   * the two side by side.
   */
  baseline?: string;
  /** A round trip (ms) between the browser and every server, over TCP: see `startTcpProxy`. 0 by default: loopback. */
  rttMs?: number;
}

/** `server` as a browser `rttMs` away reaches it: through a delaying proxy, stopped with it. */
async function reachedOver(rttMs: number, server: ServerProcess): Promise<ServerProcess> {
  if (!rttMs) return server;
  const proxy = await startTcpProxy(server.base, { oneWayMs: rttMs / 2 });
  return {
    ...server,
    base: proxy.url,
    stop: async () => {
      await proxy.stop();
      await server.stop();
    },
  };
}

/**
 * The systems in turns in one Chromium, each on its own fresh server: per round, each system's
 * publisher goes live, its viewers of the round join one after another, and it leaves.
 */
export async function benchFirstFrame(options: FirstFrameOptions): Promise<Row[]> {
  const rounds = options.smoke ? 1 : (options.rounds ?? 2);
  const perRound = options.smoke ? 2 : 5;
  const viewers = rounds * perRound;
  const rttMs = options.rttMs ?? 0;
  const bench = benchName(rttMs);
  const pages = await benchPages();
  const baseline = options.baseline ? switchboardSystems(options.baseline, ` (baseline ${basename(options.baseline)})`) : [];
  const own = switchboardSystems();
  const systems = [...own, ...baseline, whepSystem(pages), peerjsSystem(pages)];
  const servers: ServerProcess[] = [];
  let publisher: BrowserContext | undefined;
  let browser: Browser | undefined;
  const outcomes = systems.map((): Outcome => ({ measured: [], failed: 0 }));
  const cold: Outcome = { measured: [], failed: 0 };
  let replays = Number.NaN;
  try {
    servers.push(...(await Promise.all(systems.map(async (system) => reachedOver(rttMs, await system.server())))));
    browser = await onEveryCpu(() => launchBrowser([], DEBIAN_CHROMIUM));
    // With a baseline, the two checkouts swap places every other round: run in one order, the same code
    // on both sides gave a relay p50 51 ms apart.
    const order = (round: number) => {
      const indices = systems.map((_, i) => i);
      if (!baseline.length || round % 2 === 1) return indices;
      const mine = own.length;
      return [...indices.slice(mine, mine + baseline.length), ...indices.slice(0, mine), ...indices.slice(mine + baseline.length)];
    };
    for (let round = 1; round <= rounds; round++) {
      for (const i of order(round)) {
        const system = systems[i] as System;
        const server = servers[i] as ServerProcess;
        publisher = await system.publish(browser, server, round);
        for (let k = 1; k <= perRound; k++) await measureViewer(system, browser, server, (round - 1) * perRound + k, round, outcomes[i] as Outcome, options.log);
        await publisher.close();
        publisher = undefined;
      }
    }
    const relay = systems.findIndex((s) => s.subject === 'switchboard relay');
    replays = await cacheReplays(servers[relay] as ServerProcess);
    const relaySystem = systems[relay] as System;
    for (let k = 1; k <= (options.smoke ? 0 : COLD_PROCESSES); k++) {
      const fresh = await reachedOver(rttMs, await relaySystem.server());
      try {
        const round = rounds + k;
        publisher = await relaySystem.publish(browser, fresh, round);
        await measureViewer(relaySystem, browser, fresh, (round - 1) * perRound + 1, round, cold, options.log);
        await publisher.close();
        publisher = undefined;
      } finally {
        await fresh.stop();
      }
    }
  } finally {
    await publisher?.close().catch(() => undefined);
    await browser?.close();
    await Promise.all(servers.map((server) => server.stop()));
    pages.stop();
  }
  const rows = systems.flatMap((system, i) => systemRows(bench, system, outcomes[i] as Outcome, system.subject === 'switchboard relay' ? cold : undefined));
  // What proves a relay viewer's first frame did not wait for a keyframe: the server replayed its cache.
  if (Number.isFinite(replays))
    rows.push({ bench, subject: 'switchboard relay', figure: 'viewers sent the keyframe cache', value: replays, unit: 'viewers', note: `of ${viewers}` });
  else options.log('the relay server could not be asked how many viewers it sent its keyframe cache to');
  const p50 = (subject: string) => quantile(outcomes[systems.findIndex((s) => s.subject === subject)]?.measured.map((m) => m.shownMs) ?? [], 0.5);
  rows.push({
    bench,
    subject: 'switchboard relay',
    figure: 'p50 relay ÷ p50 mesh',
    value: p50('switchboard relay') / p50('switchboard mesh'),
    unit: '×',
    goal: { op: '<=', value: RELAY_TO_MESH_GOAL },
  });
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean', default: false }, rounds: { type: 'string' }, baseline: { type: 'string' }, rtt: { type: 'string' } } });
  const rounds = values.rounds === undefined ? undefined : Number(values.rounds);
  if (rounds !== undefined && !(Number.isInteger(rounds) && rounds > 0)) throw new Error(`--rounds takes a whole number above 0, not ${values.rounds}`);
  const rttMs = values.rtt === undefined ? 0 : Number(values.rtt);
  if (!(Number.isInteger(rttMs) && rttMs >= 0 && rttMs <= 2000)) throw new Error(`--rtt takes a whole number of milliseconds from 0 to 2000, not ${values.rtt}`);
  pinLoad((line) => console.error(line));
  const rows = await benchFirstFrame({ smoke: values.smoke, rounds, rttMs, baseline: values.baseline && resolve(values.baseline), log: (line) => console.error(line) });
  console.log(formatRows(rows));
  process.exit(0);
}
