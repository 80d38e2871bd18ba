// Relay benchmark: a simulated dashcam (src/device) publishing H.264 720p at about 1.5 Mbit/s with a
// keyframe every 2 s, and werift viewers that send a browser's RTCP (receiver reports, NACKs, a PLI at
// the start), added in steps until packets are lost or the server's core is full. The server runs as its
// own process pinned to CPU 0 (taskset when present), the load on CPU 1; the server's CPU time and
// memory are read from /proc, its relay counters from its `relay {json}` lines.
//
//   bun bench/relay.ts [--step 10] [--max 100] [--seconds 5] [--connect-width 5] [--kbps 1500] [--keyframe-interval-s 2]
//                      [--ignore-pli] [--budget 240] [--server-env NAME=VALUE ...]
//
// --server-env sets a server setting for the run (repeat it for several), e.g. the keyframe cache's.
// It stops at the first step with loss (over 0.5 %, at the viewers after retransmissions, or dropped at
// the server) or a full server core, when the load generator itself fills a core (then the server's
// limit lies beyond what this machine can generate), at --max viewers, or when --budget seconds have
// passed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { spawnServer } from '../test/process-helpers';
import { LIMITS_OFF } from './limits-off';
import { cpuSeconds, pinLoad } from './process';
import { type BenchViewer, benchDevice, benchViewer } from './relay-peers';
import type { Row } from './table';

export interface RelayStep {
  viewers: number;
  /** Video packets per second the viewers received together (retransmissions included). */
  forwardedPerS: number;
  /** Share of the expected packets that never arrived (no retransmission filled the gap), over all viewers. */
  lossPct: number;
  /** Packets per second the publisher sent, and the server received from it. */
  publisherPerS: number;
  serverInPerS: number;
  /** The server process's CPU use, as a share of one core. */
  cpuPct: number;
  /** Packets the server sent to viewers per second (retransmissions included), as it counts them. */
  serverSentPerS: number;
  /** Packets the server dropped for viewers that could not take them (bounded queues), and retransmitted, per second. */
  serverDroppedPerS: number;
  serverRetransmittedPerS: number;
  /** Dropped packets as a share of what the server forwarded. */
  droppedPct: number;
  /** NACK packets the viewers sent per second, and PLIs the server sent the publisher in the window. */
  nacksPerS: number;
  keyframeRequests: number;
  /** Bytes the server's keyframe cache held at the window's end (undefined: a server without one). */
  keyframeCacheBytes: number | undefined;
  /** Server CPU time per forwarded packet, microseconds. */
  cpuUsPerPacket: number;
  /** Server resident memory, MiB. */
  rssMiB: number;
  /** Viewers that received anything in the window. */
  receiving: number;
  /** Viewer connections that failed (so far) and were made again by registering again. */
  retries: number;
  /** The benchmark process itself (publisher and viewers), as a share of one core. */
  generatorCpuPct: number;
  /**
   * Share of the window the server's event loop, and the load generator's, were ready to run but waited
   * for their core: other processes on the machine had it. Loss at a step where the server waited long
   * tells of a busy machine, not of the server's limit.
   */
  serverWaitPct: number;
  generatorWaitPct: number;
}

export interface RelayResult {
  kbps: number;
  keyframeIntervalS: number;
  /** The server settings the run set (`--server-env`). */
  serverEnv: Record<string, string>;
  steps: RelayStep[];
  /** Why no further step ran. */
  stopped: string;
  /** The load generator, not the server, ended the run: the server's limit lies beyond it. */
  generatorBound: boolean;
  /** The last step with no loss (at most 0.5 %) and the server's core not full, if any. */
  clean: RelayStep | undefined;
  /** Viewers per core: the clean step's viewers over the server's CPU share of one core then. */
  viewersPerCore: number;
  /** Resident memory added per viewer, KiB (the last clean step, or the last step, against the server before viewers). */
  memoryPerViewerKiB: number;
}

export interface RelayOptions {
  /** Seconds the whole run may take; no new step starts when it would end past that. */
  budgetS: number;
  step: number;
  max: number;
  /** Seconds of each measured window. */
  seconds: number;
  /** Viewers that connect at the same time. */
  connectWidth: number;
  kbps: number;
  keyframeIntervalS: number;
  ignorePli: boolean;
  /**
   * Settings of the server under test, as environment variables (e.g. the keyframe cache's), over the
   * benchmark's own: no rate or per-address limits, loopback candidates.
   */
  serverEnv: Record<string, string>;
  log(line: string): void;
}

/** At most this share of packets lost (at the viewers, or dropped by the server) is no loss. */
const MAX_LOSS_PCT = 0.5;
/** The server's core counts as full from this share on. */
const FULL_CORE_PCT = 95;
/** The load generator's core counts as full from this share on. */
const GENERATOR_FULL_PCT = 90;
/** Waiting this share of a window for a core means the machine was busy with other work. */
const BUSY_WAIT_PCT = 10;

/** Seconds the process's main thread (the server's event loop) spent runnable but waiting for a CPU. */
function runQueueSeconds(pid: number | 'self'): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1] ?? 0) / 1e9;
  } catch {
    return 0; // a kernel without schedstats: no waiting seen
  }
}

function processRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

export interface RelayCounters {
  /** When the server wrote them, ms since the epoch. */
  at: number;
  packetsIn: number;
  packetsOut: number;
  dropped: number;
  retransmitted: number;
  keyframeRequests: number;
  /** Bytes the relay's keyframe caches hold, on a server that has them. */
  keyframeCacheBytes?: number;
}

/** The server's latest `relay {json}` counters line, if there is one. */
function relayCounters(output: string): RelayCounters | undefined {
  const at = output.lastIndexOf('\nrelay {');
  if (at < 0) return undefined;
  try {
    return JSON.parse(output.slice(at + 7).split('\n')[0] ?? '') as RelayCounters;
  } catch {
    return undefined; // a line being written
  }
}

/** The server's first counters line written after now (every 500 ms). */
async function nextRelayCounters(output: () => string): Promise<RelayCounters> {
  const after = performance.timeOrigin + performance.now();
  const deadline = Date.now() + 5_000;
  for (;;) {
    const counters = relayCounters(output());
    if (counters && counters.at > after) return counters;
    if (Date.now() > deadline) throw new Error('the relay benchmark server wrote no counters for 5 s');
    await Bun.sleep(50);
  }
}

const isClean = (s: RelayStep) => s.lossPct <= MAX_LOSS_PCT && s.droppedPct <= MAX_LOSS_PCT && s.cpuPct < FULL_CORE_PCT && s.receiving === s.viewers;

/**
 * What a run of steps loads and measures: the server processes that carry the media (one, or the
 * instances of a cluster), where each viewer joins, and what the servers and publishers counted.
 */
export interface RelayTarget {
  /** The server processes: their CPU, waits and memory are summed. */
  pids: number[];
  /** Where the viewer numbered `i` (from 0) registers. */
  viewerAt(i: number): { url: string; sessionId: string };
  /** The servers' relay counters together, as counted after the call. */
  counters(): Promise<RelayCounters>;
  /** RTP packets the publishers sent so far. */
  published(): number;
}

/** What a run of steps found; the servers' memory before the first viewer, for the memory per viewer. */
export interface RelaySteps {
  steps: RelayStep[];
  stopped: string;
  generatorBound: boolean;
  rssBefore: number;
}

/**
 * Adds viewers to `target` in steps of `options.step` and measures each step, until loss, a full server
 * core, a full load generator core, `options.max` viewers or the budget. The viewers are closed at the end.
 */
export async function relaySteps(options: RelayOptions, target: RelayTarget): Promise<RelaySteps> {
  const started = Date.now();
  const stopAt = started + options.budgetS * 1000;
  // A step whose viewers are still connecting this long after the budget is given up, unmeasured.
  const giveUpAt = stopAt + 10_000;
  const viewers: BenchViewer[] = [];
  const steps: RelayStep[] = [];
  let stopped = `the maximum of ${options.max} viewers`;
  let generatorBound = false;
  const rssBefore = sum(target.pids, processRssMiB);
  try {
    let lastStepMs = 0;
    for (let count = Math.min(options.step, options.max); count <= options.max; count += options.step) {
      const stepStarted = Date.now();
      // A step takes at least as long as the last one did.
      if (stepStarted + lastStepMs > stopAt) {
        stopped = `the time budget (${options.budgetS} s)`;
        break;
      }
      // A few at a time, each batch connected before the next: viewers arriving, not a storm of handshakes
      // (werift's DTLS handshake runs in JavaScript on both sides and is the costly part of a connection).
      while (viewers.length < count) {
        const ids = Array.from({ length: Math.min(options.connectWidth, count - viewers.length) }, (_, i) => viewers.length + i);
        const joined = await Promise.all(
          ids.map((i) => {
            const at = target.viewerAt(i);
            return benchViewer(at.url, at.sessionId, `v${i + 1}`);
          }),
        );
        viewers.push(...joined);
        const connectBy = Math.min(Date.now() + 20_000, giveUpAt);
        while (joined.some((v) => !v.connected) && Date.now() < connectBy) await Bun.sleep(20);
        if (Date.now() >= giveUpAt) break;
      }
      // Until every viewer gets packets (a new one from a keyframe on), then a second to settle.
      for (const v of viewers) v.reset();
      const deadline = Math.min(Date.now() + 20_000, giveUpAt);
      while (viewers.some((v) => v.counts().received === 0) && Date.now() < deadline) await Bun.sleep(100);
      if (Date.now() >= giveUpAt) {
        stopped = `the time budget (${options.budgetS} s), while ${count} viewers connected`;
        break;
      }
      await Bun.sleep(1000);
      const step = await measure(options, viewers, target);
      steps.push(step);
      lastStepMs = Date.now() - stepStarted;
      options.log(
        `${((Date.now() - started) / 1000).toFixed(0)} s: ${count} viewers (${step.receiving} receiving, ${step.retries} reconnected): publisher ${Math.round(step.publisherPerS)} packets/s (server got ${Math.round(step.serverInPerS)}); ` +
          `server sent ${Math.round(step.serverSentPerS)} packets/s (${Math.round(step.serverRetransmittedPerS)} retransmitted, ${Math.round(step.serverDroppedPerS)} dropped), ` +
          `viewers got ${Math.round(step.forwardedPerS)} and sent ${Math.round(step.nacksPerS)} NACKs/s, loss ${step.lossPct.toFixed(2)} %; ` +
          (step.keyframeCacheBytes === undefined ? '' : `keyframe cache ${Math.round(step.keyframeCacheBytes / 1024)} KiB; `) +
          `server CPU ${step.cpuPct.toFixed(0)} % of a core (waited ${step.serverWaitPct.toFixed(0)} % for it), ${step.cpuUsPerPacket.toFixed(1)} µs/packet, RSS ${step.rssMiB.toFixed(0)} MiB; ` +
          `load generator CPU ${step.generatorCpuPct.toFixed(0)} % (waited ${step.generatorWaitPct.toFixed(0)} %)`,
      );
      if (!isClean(step)) {
        stopped = step.cpuPct >= FULL_CORE_PCT ? 'a full server core' : step.receiving < step.viewers ? 'viewers receiving nothing' : 'loss';
        if (step.cpuPct < FULL_CORE_PCT && Math.max(step.serverWaitPct, step.generatorWaitPct) > BUSY_WAIT_PCT) {
          stopped += ` on a busy machine (the server waited ${step.serverWaitPct.toFixed(0)} % of the window for its core, the load generator ${step.generatorWaitPct.toFixed(0)} %: other processes had them)`;
        }
        break;
      }
      // Past this the generator, not the server, would decide the result.
      if (step.generatorCpuPct > GENERATOR_FULL_PCT) {
        stopped = 'the load generator reaching a full core (the server is not the limit yet)';
        generatorBound = true;
        break;
      }
    }
    options.log(`stopped at ${stopped}`);
  } finally {
    await Promise.all(viewers.map((v) => v.close()));
  }
  return { steps, stopped, generatorBound, rssBefore };
}

/** The run's figures from its steps: the last clean step, viewers per core, memory per viewer. */
export function relayResult(options: Pick<RelayOptions, 'kbps' | 'keyframeIntervalS' | 'serverEnv'>, run: RelaySteps): RelayResult {
  const { steps } = run;
  const clean = steps.filter(isClean).at(-1);
  // Memory does not depend on loss: the last step tells it when none was clean.
  const memoryStep = clean ?? steps.at(-1);
  return {
    kbps: options.kbps,
    keyframeIntervalS: options.keyframeIntervalS,
    serverEnv: options.serverEnv,
    steps,
    stopped: run.stopped,
    generatorBound: run.generatorBound,
    clean,
    viewersPerCore: clean ? Math.floor(clean.viewers / Math.max(0.01, clean.cpuPct / 100)) : 0,
    memoryPerViewerKiB: memoryStep ? ((memoryStep.rssMiB - run.rssBefore) * 1024) / memoryStep.viewers : Number.NaN,
  };
}

/** The relay's server settings the benchmark runs with: no rate or per-address limits, loopback candidates, room for `max` viewers. */
export function benchServerEnv(max: number): Record<string, string> {
  const peers = String(max + 2);
  return {
    PORT: '0',
    HOST: '127.0.0.1',
    RELAY_HOST_IPS: '127.0.0.1',
    RELAY_VIDEO_CODECS: 'h264,vp8',
    MAX_PEERS_PER_SESSION: peers,
    MAX_RELAY_PEERS: peers,
    ...LIMITS_OFF,
    MAX_RELAY_PEERS_PER_IP: '0',
  };
}

/** The command that pins a server to CPU 0 (the load runs on CPU 1), when there is taskset. */
export const pinServer = (): string[] => (Bun.which('taskset') ? ['taskset', '-c', '0'] : []);

/** Runs the benchmark once against a fresh server process; bounded by `max` viewers, `seconds` per step and `budgetS`. */
export async function benchRelay(options: RelayOptions): Promise<RelayResult> {
  const started = Date.now();
  const entry = join(import.meta.dir, 'relay-server.ts');
  const server = await spawnServer([...pinServer(), process.execPath, entry], { env: { ...benchServerEnv(options.max), ...options.serverEnv } });
  const pid = server.proc.pid; // taskset execs the server: same process
  let publisher: Awaited<ReturnType<typeof benchDevice>> | undefined;
  try {
    publisher = await benchDevice(server.url, 'bench', { kbps: options.kbps, keyframeIntervalS: options.keyframeIntervalS, ignorePli: options.ignorePli });
    const device = publisher;
    const run = await relaySteps(options, {
      pids: [pid],
      viewerAt: () => ({ url: server.url, sessionId: 'bench' }),
      counters: () => nextRelayCounters(() => server.output()),
      published: () => device.packets(),
    });
    return relayResult(options, run);
  } finally {
    await publisher?.close();
    await server.stop();
    options.log(`${((Date.now() - started) / 1000).toFixed(0)} s: closed`);
  }
}

const sum = (pids: number[], read: (pid: number) => number) => pids.reduce((n, pid) => n + read(pid), 0);

/** One measured window of `options.seconds`, with every viewer connected. */
async function measure(options: RelayOptions, viewers: BenchViewer[], target: RelayTarget): Promise<RelayStep> {
  const { pids, published } = target;
  const relay0 = await target.counters();
  for (const v of viewers) v.reset();
  const cpu0 = sum(pids, cpuSeconds);
  const wait0 = sum(pids, runQueueSeconds);
  const ownWait0 = runQueueSeconds('self');
  const own0 = process.cpuUsage();
  const sent0 = published();
  const t0 = performance.now();
  await Bun.sleep(options.seconds * 1000);
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = sum(pids, cpuSeconds) - cpu0;
  const own = process.cpuUsage(own0);
  const wait = sum(pids, runQueueSeconds) - wait0;
  const ownWait = runQueueSeconds('self') - ownWait0;
  const sent = published() - sent0;
  const atEnd = viewers.map((v) => v.counts());
  await Bun.sleep(300); // stragglers, and retransmissions of the window's last packets
  const counts = viewers.map((v) => v.counts());
  const relay1 = await target.counters();
  // The server's counters over their own span, which starts and ends up to half a second off the window's.
  const span = (relay1.at - relay0.at) / 1000;
  const total = (pick: (c: (typeof counts)[number]) => number) => counts.reduce((n, c) => n + pick(c), 0);
  const expected = total((c) => c.expected);
  const serverSent = relay1.packetsOut - relay0.packetsOut;
  const dropped = relay1.dropped - relay0.dropped;
  return {
    viewers: viewers.length,
    forwardedPerS: atEnd.reduce((n, c) => n + c.received, 0) / elapsed,
    lossPct: (100 * total((c) => c.lost)) / Math.max(1, expected),
    publisherPerS: sent / elapsed,
    serverInPerS: (relay1.packetsIn - relay0.packetsIn) / span,
    serverSentPerS: serverSent / span,
    serverDroppedPerS: dropped / span,
    serverRetransmittedPerS: (relay1.retransmitted - relay0.retransmitted) / span,
    droppedPct: (100 * dropped) / Math.max(1, serverSent + dropped),
    nacksPerS: atEnd.reduce((n, c) => n + c.nacks, 0) / elapsed,
    keyframeRequests: relay1.keyframeRequests - relay0.keyframeRequests,
    keyframeCacheBytes: relay1.keyframeCacheBytes,
    cpuPct: (100 * cpu) / elapsed,
    cpuUsPerPacket: (cpu * 1e6) / Math.max(1, (serverSent / span) * elapsed),
    rssMiB: sum(pids, processRssMiB),
    receiving: atEnd.filter((c) => c.received > 0).length,
    retries: total((c) => c.retries),
    generatorCpuPct: (100 * (own.user + own.system)) / 1e6 / elapsed,
    serverWaitPct: (100 * wait) / elapsed,
    generatorWaitPct: (100 * ownWait) / elapsed,
  };
}

/** Server settings for the run given as NAME=VALUE. */
export function parseServerEnv(pairs: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new Error(`--server-env ${pair}: expected NAME=VALUE`);
    env[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return env;
}

/** The server settings of a run, as a row's note says them. */
const settingsNote = (env: Record<string, string>) =>
  Object.keys(env).length
    ? Object.entries(env)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')
    : 'server defaults';

/**
 * The harness's rows (bench/index.ts): viewers per core, the step it comes from, CPU per packet and memory
 * per viewer. At most about 55 s; `smoke` runs one step of two viewers. `serverEnv` are settings of the
 * server under test: the harness passes every RELAY_* variable of its own environment.
 */
export async function benchRelayRows(options: { smoke: boolean; log: (line: string) => void; serverEnv?: Record<string, string> }): Promise<Row[]> {
  const serverEnv = options.serverEnv ?? {};
  const result = await benchRelay({
    budgetS: options.smoke ? 10 : 45,
    step: options.smoke ? 2 : 25,
    max: options.smoke ? 2 : 400,
    seconds: options.smoke ? 1 : 3,
    connectWidth: 5,
    kbps: 1500,
    keyframeIntervalS: 2,
    ignorePli: false,
    serverEnv,
    log: options.log,
  });
  const bench = `relay (device simulator: H.264 720p, ${result.kbps / 1000} Mbit/s, keyframe every ${result.keyframeIntervalS} s)`;
  const subject = 'switchboard relay';
  const clean = result.clean;
  const last = result.steps.at(-1);
  const perPacket = clean ?? last;
  const bound = result.generatorBound ? 'bounded by the load generator, not the server' : `stopped at ${result.stopped}`;
  const at = clean
    ? `${clean.viewers} viewers at ${clean.cpuPct.toFixed(0)} % of a core, loss ${clean.lossPct.toFixed(2)} %`
    : `no clean step; ${last?.viewers ?? 0} viewers: loss ${last?.lossPct.toFixed(2) ?? '—'} %`;
  return [
    {
      bench,
      subject,
      figure: 'viewers per core, loss ≤ 0.5 %',
      value: result.viewersPerCore,
      unit: 'viewers',
      goal: { op: '>=', value: 200 },
      note: `${at}; ${bound}; ${settingsNote(serverEnv)}`,
    },
    {
      bench,
      subject,
      figure: 'viewers at the last clean step',
      value: clean?.viewers ?? 0,
      unit: 'viewers',
      note: clean
        ? `server CPU ${clean.cpuPct.toFixed(0)} % (waited ${clean.serverWaitPct.toFixed(0)} % for its core), load CPU ${clean.generatorCpuPct.toFixed(0)} % (waited ${clean.generatorWaitPct.toFixed(0)} %), ${Math.round(clean.serverSentPerS)} packets/s out, ${Math.round(clean.nacksPerS)} NACKs/s`
        : bound,
    },
    {
      bench,
      subject,
      figure: 'server CPU per packet forwarded',
      value: perPacket?.cpuUsPerPacket ?? Number.NaN,
      unit: 'µs',
      note: perPacket ? `${perPacket.viewers} viewers, publisher ${Math.round(perPacket.publisherPerS)} packets/s` : undefined,
    },
    { bench, subject, figure: 'memory per viewer', value: result.memoryPerViewerKiB, unit: 'KiB' },
  ];
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      step: { type: 'string' },
      max: { type: 'string' },
      seconds: { type: 'string' },
      'connect-width': { type: 'string' },
      kbps: { type: 'string' },
      'keyframe-interval-s': { type: 'string' },
      'ignore-pli': { type: 'boolean', default: false },
      budget: { type: 'string' },
      'server-env': { type: 'string', multiple: true },
    },
  });
  const log = (line: string) => console.log(line);
  pinLoad(log);
  const result = await benchRelay({
    budgetS: Number(values.budget ?? 240),
    step: Number(values.step ?? 10),
    max: Number(values.max ?? 100),
    seconds: Number(values.seconds ?? 5),
    connectWidth: Number(values['connect-width'] ?? 5),
    kbps: Number(values.kbps ?? 1500),
    keyframeIntervalS: Number(values['keyframe-interval-s'] ?? 2),
    ignorePli: values['ignore-pli'] ?? false,
    serverEnv: parseServerEnv(values['server-env'] ?? []),
    log,
  });
  console.log(JSON.stringify(result, null, 2));
}
