// Relay benchmark over WebSocket: switchboard against PeerJS server and a bare Bun relay (the ceiling for a
// relay that writes each frame as it comes). See BENCHMARKS.md for the method and the figures.
//
//   bun bench/ws-relay.ts                 # switchboard, PeerJS, bare Bun; 3 runs each (~6 min); a markdown table
//   bun bench/ws-relay.ts --servers switchboard,peerjs --runs 1 --measure throughput,memory
//   bun bench/ws-relay.ts --servers switchboard --measure throughput --profile /tmp/prof
//
// Each server runs as its own process pinned to CPU 0 (`taskset -c 0`), the load (this process) on CPU 1.
// Three figures per server and run:
//   throughput  100 pairs, each sender keeping a window of ~300-byte messages in flight to its receiver:
//               messages delivered per second, and the server's CPU use meanwhile;
//   latency     the same pairs sending 35,000 msg/s in all, spread evenly: p50/p99 from send to delivery;
//   memory      10,000 idle connected peers: the server's RSS growth per peer, after a full GC.
// Everything is bounded: a run takes about (warm-up + duration) × 2 + 30 s (the idle peers) per server.

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuSeconds, inBatches, type ServerProcess, startServer } from './process';
import { connectRaw, type RawWebSocket } from './raw-ws';
import { median, quantileOfSorted } from './stats';

export const SERVERS = ['switchboard', 'peerjs', 'bare', 'bare-json', 'elysia-ws'] as const;
export type ServerKind = (typeof SERVERS)[number];

export const MEASUREMENTS = ['throughput', 'latency', 'memory'] as const;
export type Measurement = (typeof MEASUREMENTS)[number];

export interface RelayOptions {
  servers: readonly ServerKind[];
  runs: number;
  pairs: number;
  /** Size of one message as the sender writes it. */
  messageBytes: number;
  /** Messages each sender keeps in flight in the throughput test. */
  window: number;
  /** Total send rate of the latency test, messages per second. */
  rate: number;
  warmupMs: number;
  durationMs: number;
  /** Connected idle peers in the memory test. */
  idlePeers: number;
  /** Which measurements to take; the others are reported as NaN. */
  measure: readonly Measurement[];
  /** Pin servers to CPU 0 and this process to CPU 1 (needs taskset and two CPUs). */
  pin: boolean;
  /** Write a CPU profile of each Bun server into this directory (markdown, Bun's --cpu-prof-md). */
  profileDir?: string;
  log: (line: string) => void;
}

export const DEFAULTS: RelayOptions = {
  servers: ['switchboard', 'peerjs', 'bare'],
  runs: 3,
  pairs: 100,
  messageBytes: 300,
  window: 16,
  rate: 35_000,
  warmupMs: 1000,
  durationMs: 4000,
  idlePeers: 10_000,
  measure: MEASUREMENTS,
  pin: true,
  log: (line) => console.error(line),
};

export interface RunFigures {
  /** Messages delivered per second. */
  throughput: number;
  /** The server's CPU use during the throughput test, in % of one core. */
  serverCpu: number;
  /** Delivery latency at `rate`, milliseconds. */
  p50: number;
  p99: number;
  /** The rate actually sent in the latency test. */
  sentRate: number;
  /** The load's (this process's) CPU use during the latency test, in % of one core: near 100, the load is what limits. */
  loadCpu: number;
  /** RSS growth per idle connected peer, bytes. */
  bytesPerPeer: number;
}

export interface ServerFigures {
  server: ServerKind;
  runs: RunFigures[];
}

const here = import.meta.dir;

/** How each server is started and spoken to. */
interface Protocol {
  command: string[];
  /** Anything to do over HTTP before a peer connects. */
  prepare?(base: string, pair: string, role: Role): Promise<void>;
  url(base: string, pair: string, role: Role): string;
  /** A message from the sender of `pair` to its receiver, `body` being the JSON payload object text. */
  message(pair: string, body: string): string;
}

type Role = 's' | 'r';

const protocols: Record<ServerKind, Protocol> = {
  switchboard: {
    command: [process.execPath, join(here, 'servers/switchboard.ts')],
    async prepare(base, pair, role) {
      const res = await fetch(`${base}/register/${pair}/${role}`, { method: 'POST' });
      if (!res.ok) throw new Error(`register ${pair}/${role}: ${res.status} ${await res.text()}`);
    },
    url: (base, pair, role) => `${base.replace('http', 'ws')}/ws/${pair}/${role}`,
    message: (_pair, body) => `{"type":"offer","target":"r","payload":${body}}`,
  },
  peerjs: {
    // Under Node, its own runtime, when there is one.
    command: Bun.which('node') ? ['node', '--expose-gc', join(here, 'servers/peerjs.mjs')] : [process.execPath, join(here, 'servers/peerjs.mjs')],
    url: (base, pair, role) => `${base.replace('http', 'ws')}/peerjs?key=peerjs&id=${pair}${role}&token=t${pair}${role}`,
    message: (pair, body) => `{"type":"OFFER","dst":"${pair}r","payload":${body}}`,
  },
  bare: {
    command: [process.execPath, join(here, 'servers/bare.ts')],
    url: (base, pair, role) => `${base.replace('http', 'ws')}/${pair}/${role}`,
    message: (_pair, body) => `{"type":"offer","target":"r","payload":${body}}`,
  },
  'bare-json': {
    command: [process.execPath, join(here, 'servers/bare.ts'), '--json'],
    url: (base, pair, role) => `${base.replace('http', 'ws')}/${pair}/${role}`,
    message: (_pair, body) => `{"type":"offer","target":"r","payload":${body}}`,
  },
  'elysia-ws': {
    command: [process.execPath, join(here, 'servers/elysia-ws.ts')],
    url: (base, pair, role) => `${base.replace('http', 'ws')}/${pair}/${role}`,
    message: (_pair, body) => `{"type":"offer","target":"r","payload":${body}}`,
  },
};

interface Pair {
  name: string;
  sender: RawWebSocket;
  receiver: RawWebSocket;
}

async function openPairs(kind: ServerKind, base: string, count: number, prefix: string): Promise<Pair[]> {
  const protocol = protocols[kind];
  const names = Array.from({ length: count }, (_, i) => `${prefix}${i}`);
  return inBatches(names, 50, async (name) => {
    // Receiver first: a server without held messages (PeerJS queues only briefly) must see it connected.
    await protocol.prepare?.(base, name, 'r');
    await protocol.prepare?.(base, name, 's');
    const receiver = await connectRaw(protocol.url(base, name, 'r'));
    const sender = await connectRaw(protocol.url(base, name, 's'));
    return { name, sender, receiver };
  });
}

function closePairs(pairs: Pair[]): void {
  for (const p of pairs) {
    p.sender.close();
    p.receiver.close();
  }
}

/** Relayed messages are the only frames near the message size (pings, acks, welcomes are far smaller). */
const relayedBy = (options: RelayOptions) => (payload: Uint8Array) => payload.length >= options.messageBytes * 0.75;

/** A payload object text of `bytes` total message size, stamped with the send time. */
function payloadMaker(kind: ServerKind, bytes: number): (pair: string, t: number) => string {
  const overhead = protocols[kind].message('p00', '{"t":00000000.000,"pad":""}').length;
  const pad = 'x'.repeat(Math.max(0, bytes - overhead));
  return (pair, t) => protocols[kind].message(pair, `{"t":${t.toFixed(3)},"pad":"${pad}"}`);
}

async function measureThroughput(kind: ServerKind, server: ServerProcess, options: RelayOptions): Promise<{ throughput: number; serverCpu: number }> {
  const pairs = await openPairs(kind, server.base, options.pairs, 't');
  const make = payloadMaker(kind, options.messageBytes);
  const isRelayed = relayedBy(options);
  let delivered = 0;
  let sending = true;
  for (const pair of pairs) {
    const message = make(pair.name, 0);
    let owed = 0;
    pair.receiver.onText = (payload) => {
      if (!isRelayed(payload)) return;
      delivered++;
      owed++;
    };
    // One delivered, one more in flight: each pair keeps `window` messages moving.
    pair.receiver.onRead = () => {
      if (sending && owed > 0) pair.sender.send(...Array<string>(owed).fill(message));
      owed = 0;
    };
    pair.sender.send(...Array<string>(options.window).fill(message));
  }
  await Bun.sleep(options.warmupMs);
  const startCount = delivered;
  const startCpu = cpuSeconds(server.pid);
  const start = performance.now();
  await Bun.sleep(options.durationMs);
  const seconds = (performance.now() - start) / 1000;
  const throughput = (delivered - startCount) / seconds;
  const serverCpu = ((cpuSeconds(server.pid) - startCpu) / seconds) * 100;
  sending = false;
  await Bun.sleep(200);
  closePairs(pairs);
  return { throughput, serverCpu };
}

async function measureLatency(kind: ServerKind, server: ServerProcess, options: RelayOptions): Promise<{ p50: number; p99: number; sentRate: number; loadCpu: number }> {
  const pairs = await openPairs(kind, server.base, options.pairs, 'l');
  const make = payloadMaker(kind, options.messageBytes);
  const isRelayed = relayedBy(options);
  const total = Math.ceil((options.rate * (options.warmupMs + options.durationMs)) / 1000);
  const latencies = new Float64Array(total);
  let recorded = 0;
  let measuring = false;
  for (const pair of pairs) {
    pair.receiver.onText = (payload) => {
      if (!isRelayed(payload)) return;
      const data = Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString('latin1');
      const at = data.indexOf('"t":');
      const sentAt = Number.parseFloat(data.slice(at + 4, data.indexOf(',', at)));
      if (measuring && recorded < total) latencies[recorded++] = performance.now() - sentAt;
    };
  }
  // Open loop: every millisecond, whatever is due by then is sent, round robin over the pairs (about 35
  // messages, at most one per pair). A timer rather than a busy loop leaves the load's core idle between
  // ticks, so that the load does not compete with its own receiving.
  const start = performance.now();
  const end = start + options.warmupMs + options.durationMs;
  let sent = 0;
  let next = 0;
  let measuredFrom = 0;
  let sentAtStart = 0;
  let cpuAtStart = process.cpuUsage();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      if (!measuring && now - start >= options.warmupMs) {
        measuring = true;
        measuredFrom = now;
        sentAtStart = sent;
        cpuAtStart = process.cpuUsage();
      }
      const due = Math.floor(((now - start) * options.rate) / 1000);
      while (sent < due) {
        const pair = pairs[next] as Pair;
        next = (next + 1) % pairs.length;
        pair.sender.send(make(pair.name, performance.now()));
        sent++;
      }
      if (now >= end) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  const elapsed = performance.now() - measuredFrom;
  const sentRate = ((sent - sentAtStart) * 1000) / elapsed;
  const cpu = process.cpuUsage(cpuAtStart);
  const loadCpu = ((cpu.user + cpu.system) / 1000 / elapsed) * 100;
  await Bun.sleep(300);
  closePairs(pairs);
  const sorted = latencies.subarray(0, recorded).sort();
  return { p50: quantileOfSorted(sorted, 0.5), p99: quantileOfSorted(sorted, 0.99), sentRate, loadCpu };
}

async function measureMemory(kind: ServerKind, server: ServerProcess, options: RelayOptions): Promise<number> {
  // One pair first, so that what every connection shares (code, pools) is not counted per peer.
  closePairs(await openPairs(kind, server.base, 1, 'w'));
  await Bun.sleep(200);
  const before = await server.rss();
  const pairs = await openPairs(kind, server.base, options.idlePeers / 2, 'm');
  await Bun.sleep(500);
  const after = await server.rss();

  closePairs(pairs);
  return (after - before) / options.idlePeers;
}

/** Runs the three measurements against each server, `runs` times, a fresh server process for each. */
export async function benchWsRelay(partial: Partial<RelayOptions> = {}): Promise<ServerFigures[]> {
  const options = { ...DEFAULTS, ...partial };
  const results: ServerFigures[] = options.servers.map((server) => ({ server, runs: [] }));
  // Runs interleave the servers, so that a burst of load from elsewhere on the machine spreads over all.
  for (let run = 1; run <= options.runs; run++) {
    for (const result of results) {
      const kind = result.server;
      const figures: RunFigures = { throughput: NaN, serverCpu: NaN, p50: NaN, p99: NaN, sentRate: NaN, loadCpu: NaN, bytesPerPeer: NaN };
      // A fresh server for each measurement, so that none inherits another's garbage or connections.
      const fresh = async <T>(measure: (server: ServerProcess) => Promise<T>): Promise<T> => {
        const server = await startServer(kind, protocols[kind].command, { pin: options.pin, profileDir: options.profileDir });
        try {
          return await measure(server);
        } finally {
          await server.stop();
        }
      };
      if (options.measure.includes('throughput')) Object.assign(figures, await fresh((s) => measureThroughput(kind, s, options)));
      if (options.measure.includes('latency')) Object.assign(figures, await fresh((s) => measureLatency(kind, s, options)));
      if (options.measure.includes('memory')) figures.bytesPerPeer = await fresh((s) => measureMemory(kind, s, options));
      result.runs.push(figures);
      options.log(`run ${run} ${kind}: ${JSON.stringify(figures, (_, v) => (typeof v === 'number' ? Math.round(v * 1000) / 1000 : v))}`);
    }
  }
  return results;
}

/** A markdown table of medians (and the range over runs), with each server's throughput against PeerJS. */
export function formatTable(results: ServerFigures[]): string {
  // CPU time per message is what a busy machine disturbs least: it does not count time the server waited
  // for its core. One core's worth of it is the throughput the server would reach alone on that core.
  const cpuPerMessage = (runs: RunFigures[]) => runs.map((r) => (r.serverCpu * 1e4) / r.throughput);
  const peerjs = results.find((r) => r.server === 'peerjs');
  const peerjsThroughput = peerjs ? median(peerjs.runs.map((r) => r.throughput)) : undefined;
  const peerjsCost = peerjs ? median(cpuPerMessage(peerjs.runs)) : undefined;
  const range = (values: number[], digits: number, scale = 1) =>
    `${(median(values) / scale).toFixed(digits)} (${(Math.min(...values) / scale).toFixed(digits)}–${(Math.max(...values) / scale).toFixed(digits)})`;
  const lines = [
    '| server | throughput, k msg/s | × PeerJS | server CPU % | server CPU µs/msg | × PeerJS by CPU cost | p50 ms at rate | p99 ms at rate | rate sent, k msg/s | KiB per idle peer |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const { server, runs } of results) {
    const pick = (key: keyof RunFigures) => runs.map((r) => r[key]);
    const ratio = peerjsThroughput ? (median(pick('throughput')) / peerjsThroughput).toFixed(2) : '–';
    const cost = cpuPerMessage(runs);
    const costRatio = peerjsCost ? (peerjsCost / median(cost)).toFixed(2) : '–';
    lines.push(
      `| ${server} | ${range(pick('throughput'), 1, 1000)} | ${ratio} | ${range(pick('serverCpu'), 0)} | ${range(cost, 2)} | ${costRatio} | ${range(pick('p50'), 2)} | ${range(pick('p99'), 2)} | ${range(pick('sentRate'), 1, 1000)} | ${range(pick('bytesPerPeer'), 2, 1024)} |`,
    );
  }
  return lines.join('\n');
}

function pinSelf(): boolean {
  if (!Bun.which('taskset') || navigator.hardwareConcurrency < 2) return false;
  // Every thread of this process (the load) onto CPU 1; the servers are started on CPU 0.
  return Bun.spawnSync(['taskset', '-a', '-cp', '1', String(process.pid)], { stdout: 'ignore' }).exitCode === 0;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      servers: { type: 'string' },
      runs: { type: 'string' },
      pairs: { type: 'string' },
      rate: { type: 'string' },
      'duration-ms': { type: 'string' },
      'warmup-ms': { type: 'string' },
      'idle-peers': { type: 'string' },
      measure: { type: 'string' },
      'no-pin': { type: 'boolean' },
      profile: { type: 'string' },
    },
  });
  const servers = (values.servers?.split(',') ?? DEFAULTS.servers) as ServerKind[];
  const unknown = servers.filter((s) => !SERVERS.includes(s));
  if (unknown.length) throw new Error(`unknown server ${unknown.join(', ')}; choose from ${SERVERS.join(', ')}`);
  const measure = (values.measure?.split(',') ?? MEASUREMENTS) as Measurement[];
  if (measure.some((m) => !MEASUREMENTS.includes(m))) throw new Error(`--measure takes ${MEASUREMENTS.join(',')}`);
  const number = (value: string | undefined, fallback: number) => (value === undefined ? fallback : Number(value));
  const pin = !values['no-pin'] && pinSelf();
  if (!values['no-pin'] && !pin) console.error('not pinned: taskset or a second CPU is missing');
  const results = await benchWsRelay({
    servers,
    measure,
    profileDir: values.profile,
    pin,
    runs: number(values.runs, DEFAULTS.runs),
    pairs: number(values.pairs, DEFAULTS.pairs),
    rate: number(values.rate, DEFAULTS.rate),
    durationMs: number(values['duration-ms'], DEFAULTS.durationMs),
    warmupMs: number(values['warmup-ms'], DEFAULTS.warmupMs),
    idlePeers: number(values['idle-peers'], DEFAULTS.idlePeers),
  });
  console.log(formatTable(results));
  process.exit(0);
}
