// Relay benchmark: one publisher of synthetic VP8 at about 1.5 Mbit/s, viewers added in steps until
// packets are lost or the server's one core is full. The server runs as its own process pinned to one
// core (taskset when present); its CPU time and memory are read from /proc.
//
//   bun bench/relay.ts [--step 10] [--max 100] [--seconds 5] [--kbps 1500] [--budget 240]
//
// It stops at the first step with loss (over 0.5 %) or a full server core, when the load generator
// itself fills a core (then the server's limit lies beyond what this machine can generate), at --max
// viewers, or when --budget seconds have passed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { spawnServer } from '../test/process-helpers';
import { type BenchViewer, benchPublisher, benchViewer } from './relay-peers';

export interface RelayStep {
  viewers: number;
  /** Packets per second the viewers received together: what the server forwarded. */
  forwardedPerS: number;
  /** Share of the expected packets that never arrived, over all viewers. */
  lossPct: number;
  /** The server process's CPU use, as a share of one core. */
  cpuPct: number;
  /** Packets the server sent to viewers per second (retransmissions included), as it counts them. */
  serverSentPerS: number;
  /** Packets the server dropped for viewers that could not take them (bounded queues), and retransmitted, per second. */
  serverDroppedPerS: number;
  serverRetransmittedPerS: number;
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
}

export interface RelayResult {
  kbps: number;
  publisherPacketsPerS: number;
  steps: RelayStep[];
  /** The most viewers of a step with no loss (at most 0.5 %) and the server's core not saturated. */
  viewersClean: number;
  /** Viewers one core would carry at 90 % busy, from the CPU per viewer of that step. */
  viewersPerCore: number;
  /** Resident memory added per viewer, KiB (the last clean step against the first). */
  memoryPerViewerKiB: number;
}

export interface RelayOptions {
  /** Seconds the whole run may take; no new step starts after that. */
  budgetS: number;
  step: number;
  max: number;
  seconds: number;
  kbps: number;
  log(line: string): void;
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

function processRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}

/** The server's latest `relay {json}` counters line. */
function relayStats(output: string): { packetsOut: number; dropped: number; retransmitted: number } {
  const line = output.slice(output.lastIndexOf('\nrelay {') + 7).split('\n')[0] ?? '{}';
  try {
    return JSON.parse(line);
  } catch {
    return { packetsOut: 0, dropped: 0, retransmitted: 0 };
  }
}

/** Runs the benchmark once against a fresh server process; bounded by `max` viewers and `seconds` per step. */
export async function benchRelay(options: RelayOptions): Promise<RelayResult> {
  const root = join(import.meta.dir, '..');
  const entry = join(root, 'bench', 'relay-server.ts');
  const pin = Bun.which('taskset') ? ['taskset', '-c', '1'] : [];
  const server = await spawnServer([...pin, process.execPath, entry], {
    env: {
      PORT: '0',
      HOST: '127.0.0.1',
      RELAY_HOST_IPS: '127.0.0.1',
      MAX_PEERS_PER_SESSION: String(options.max + 2),
      REGISTER_RATE_PER_MIN: '0',
      MESSAGE_RATE_PER_S: '0',
      PEER_MESSAGE_RATE_PER_S: '0',
      MAX_STREAMS_PER_IP: '0',
      MAX_SESSIONS_PER_IP: '0',
      MAX_PEERS_PER_IP: '0',
      MAX_RELAY_PEERS: String(options.max + 2),
      MAX_RELAY_PEERS_PER_IP: '0',
    },
  });
  const pid = server.proc.pid; // taskset execs the server: same process
  const publisher = await benchPublisher(server.url, 'bench', options.kbps);
  const viewers: BenchViewer[] = [];
  const counts = () => viewers.map((v) => v.counts());
  const steps: RelayStep[] = [];
  const rssBefore = processRssMiB(pid);
  const stopAt = Date.now() + options.budgetS * 1000;
  let stopped = 'the last step';
  try {
    for (let count = options.step; count <= options.max; count += options.step) {
      if (Date.now() > stopAt) {
        stopped = `the time budget (${options.budgetS} s)`;
        break;
      }
      // One at a time, each connected before the next: viewers arriving, not a storm of handshakes (werift's
      // DTLS handshake runs in JavaScript on both sides and is the costly part of a connection).
      while (viewers.length < count) {
        const viewer = await benchViewer(server.url, 'bench', `v${viewers.length + 1}`);
        viewers.push(viewer);
        const connectBy = Date.now() + 20_000;
        while (!viewer.connected && Date.now() < connectBy) await Bun.sleep(20);
      }
      // Wait until every viewer gets packets (each new one after a keyframe), then measure a clean window.
      for (const v of viewers) v.reset();
      const deadline = Date.now() + 30_000;
      while (counts().some((c) => c.received === 0) && Date.now() < deadline) await Bun.sleep(200);
      await Bun.sleep(2000);
      for (const v of viewers) v.reset();
      const relay0 = relayStats(server.output());
      const cpu0 = processCpuSeconds(pid);
      const own0 = process.cpuUsage();
      const t0 = performance.now();
      const sent0 = publisher.packets();
      await Bun.sleep(options.seconds * 1000);
      await Bun.sleep(300); // stragglers and retransmissions of the window's last packets
      const elapsed = (performance.now() - t0) / 1000;
      const cpu = processCpuSeconds(pid) - cpu0;
      await Bun.sleep(600); // the server's next counters line
      const relay1 = relayStats(server.output());
      const own = process.cpuUsage(own0);
      const window = counts();
      const totals = window.reduce((a, c) => ({ received: a.received + c.received, lost: a.lost + c.lost }), { received: 0, lost: 0 });
      const step: RelayStep = {
        viewers: count,
        forwardedPerS: totals.received / elapsed,
        serverSentPerS: (relay1.packetsOut - relay0.packetsOut) / elapsed,
        serverDroppedPerS: (relay1.dropped - relay0.dropped) / elapsed,
        serverRetransmittedPerS: (relay1.retransmitted - relay0.retransmitted) / elapsed,
        lossPct: (100 * totals.lost) / Math.max(1, totals.received + totals.lost),
        cpuPct: (100 * cpu) / elapsed,
        cpuUsPerPacket: (cpu * 1e6) / Math.max(1, relay1.packetsOut - relay0.packetsOut || totals.received),
        rssMiB: processRssMiB(pid),
        receiving: window.filter((c) => c.received > 0).length,
        retries: window.reduce((n, c) => n + c.retries, 0),
        generatorCpuPct: (100 * (own.user + own.system)) / 1e6 / elapsed,
      };
      steps.push(step);
      options.log(
        `${count} viewers (${step.receiving} receiving, ${step.retries} reconnected): server sent ${Math.round(step.serverSentPerS)} packets/s (${Math.round(step.serverRetransmittedPerS)} retransmitted, ${Math.round(step.serverDroppedPerS)} dropped), viewers got ${Math.round(step.forwardedPerS)}, loss ${step.lossPct.toFixed(2)} %, server CPU ${step.cpuPct.toFixed(0)} % of a core, ${step.cpuUsPerPacket.toFixed(1)} µs/packet, RSS ${step.rssMiB.toFixed(0)} MiB; load generator CPU ${step.generatorCpuPct.toFixed(0)} % (publisher ${Math.round((publisher.packets() - sent0) / elapsed)} packets/s)`,
      );
      if (step.lossPct > 0.5 || step.cpuPct > 95) {
        stopped = 'loss or a full server core';
        break;
      }
      // Past this the generator, not the server, would decide the result.
      if (step.generatorCpuPct > 90) {
        stopped = 'the load generator reaching a full core (the server is not the limit yet)';
        break;
      }
    }
    options.log(`stopped at ${stopped}`);
  } finally {
    await Promise.all(viewers.map((v) => v.close()));
    await publisher.close();
    await server.stop();
  }
  const clean = steps.filter((s) => s.lossPct <= 0.5 && s.cpuPct <= 95);
  const best = clean.at(-1);
  return {
    kbps: options.kbps,
    publisherPacketsPerS: Math.round(30 * Math.ceil((options.kbps * 1000) / 8 / 30 / 1100)),
    steps,
    viewersClean: best?.viewers ?? 0,
    viewersPerCore: best ? Math.floor((best.viewers * 90) / Math.max(1, best.cpuPct)) : 0,
    memoryPerViewerKiB: best ? ((best.rssMiB - rssBefore) * 1024) / best.viewers : 0,
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { step: { type: 'string' }, max: { type: 'string' }, seconds: { type: 'string' }, kbps: { type: 'string' }, budget: { type: 'string' } },
  });
  const result = await benchRelay({
    budgetS: Number(values.budget ?? 240),
    step: Number(values.step ?? 10),
    max: Number(values.max ?? 100),
    seconds: Number(values.seconds ?? 5),
    kbps: Number(values.kbps ?? 1500),
    log: (line) => console.log(line),
  });
  console.log(JSON.stringify(result, null, 2));
}
