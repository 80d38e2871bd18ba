// Concurrent event streams on one switchboard process: the resident memory an open SSE stream costs, the
// CPU its pings cost, how fast the streams open; and, beside them, the memory of an idle WebSocket peer of
// switchboard and of PeerJS server (measured by bench/ws-relay.ts).
//
//   bun bench/streams.ts           # 20,000 streams (fewer if the open-file limit is lower), 10,000 WS peers; ~1½ min
//   bun bench/streams.ts --smoke   # 200 streams, pings every 200 ms, 200 WS peers; a few seconds
//
// The server (bench/servers/switchboard.ts: rate limits and the per-IP stream cap off) runs pinned to CPU 0;
// this process, the load, should run on CPU 1 (it pins itself when run from the command line).
// Sessions are a device and a viewer, as in use: each registers (POST /register, on a few keep-alive
// connections: raw-http.ts), then each opens GET /events on its own connection (raw-sse.ts), which reads
// every byte, pings included, as a browser does.
//   memory  RSS after two full GCs: before any peer, with every peer registered, with every stream open.
//           Per stream is (all open − before) / streams: the registration is part of what a stream costs.
//   pings   the server's CPU time over 3 ping intervals with every stream idle, as % of one core; the
//           window starts half an interval after a ping burst, so that it holds exactly 3 bursts.
//   open    wall time to register every peer, then to open every stream (64 opening at once, so that the
//           listen backlog never overflows into 1-second SYN retries), from 127.0.0.2… on Linux: one
//           address per 4,000 streams keeps the kernel's search for a free ephemeral port short.
// Every socket is a file descriptor of the server and of this process: where the open-file limit is below
// 20,000 + a margin (it cannot be raised without CAP_SYS_RESOURCE), fewer streams run and the rows say so.
// A peer registered without a stream expires after PEER_TIMEOUT_MS (15 s by default), and on a slow machine
// the last stream may open later than that after the first registration: the server runs with a 10-minute
// timeout (nothing else changes).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuSeconds, pinLoad, type ServerProcess, startServer } from './process';
import { connectHttp, encodeRequest } from './raw-http';
import { type CountedStream, openCountedStream } from './raw-sse';
import { formatRows, type Row } from './table';
import { benchWsRelay, type ServerKind } from './ws-relay';

export interface StreamsOptions {
  smoke: boolean;
  log: (line: string) => void;
}

interface Plan {
  /** Open streams wanted; sessions are pairs, so even. */
  streams: number;
  /** Open streams of the memory run without forced GC, on a server of their own. */
  unforcedStreams: number;
  pingIntervalMs: number;
  /** Ping intervals the CPU is measured over. */
  intervals: number;
  /** Keep-alive connections that register peers, one request in flight on each. */
  registerConnections: number;
  /** Streams being opened at once. */
  openWidth: number;
  /** Idle peers of the WebSocket memory comparison. */
  idlePeers: number;
}

const FULL: Plan = { streams: 20_000, unforcedStreams: 5_000, pingIntervalMs: 10_000, intervals: 3, registerConnections: 16, openWidth: 64, idlePeers: 10_000 };
const SMOKE: Plan = { streams: 200, unforcedStreams: 100, pingIntervalMs: 200, intervals: 3, registerConnections: 4, openWidth: 32, idlePeers: 200 };

/** Streams per local address (see `ConnectOptions.localAddress` in raw-sse.ts). */
const STREAMS_PER_ADDRESS = 4000;

/** File descriptors each process needs besides the streams' sockets: stdio, the listener, the event loop, the register connections. */
const FD_MARGIN = 150;

/** The hard limit on open files of this process (the server inherits it; Bun raises its soft limit to it). */
function openFileLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const hard = line?.trim().split(/\s+/)[4];
    return hard === undefined || hard === 'unlimited' ? Infinity : Number(hard);
  } catch {
    return Infinity;
  }
}

/** Files this process has open now. */
function openFiles(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

const canPin = (): boolean => Boolean(Bun.which('taskset')) && navigator.hardwareConcurrency >= 2;

const KiB = 1024;
const thousands = (n: number) => n.toLocaleString('en-US');

/** Runs `fn` on every index below `count`, `width` at a time, each worker taking the next index. */
async function eachIndex(count: number, width: number, fn: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, worker));
}

/** Wall time, and CPU time of the server and of this process (the load), in seconds. */
interface Phase {
  seconds: number;
  serverCpu: number;
  /** The part of `serverCpu` spent in the kernel: on loopback it includes delivering into the load's sockets. */
  serverSystemCpu: number;
  /** Seconds the server's main thread was ready to run but waited for its CPU: other work on the machine. */
  serverWaited: number;
  loadCpu: number;
}

/** Seconds the main thread of a process has waited for a CPU while ready to run (NaN without schedstat). */
function runQueueSeconds(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e9;
  } catch {
    return Number.NaN;
  }
}

/** System CPU time of a process, in seconds (`cpuSeconds` is user + system). */
function systemSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[12]) / 100;
}

async function timed(server: ServerProcess, fn: () => Promise<unknown>): Promise<Phase> {
  const serverAtStart = cpuSeconds(server.pid);
  const systemAtStart = systemSeconds(server.pid);
  const waitedAtStart = runQueueSeconds(server.pid);
  const loadAtStart = process.cpuUsage();
  const start = performance.now();
  await fn();
  const seconds = (performance.now() - start) / 1000;
  const load = process.cpuUsage(loadAtStart);
  return {
    seconds,
    serverCpu: cpuSeconds(server.pid) - serverAtStart,
    serverSystemCpu: systemSeconds(server.pid) - systemAtStart,
    serverWaited: runQueueSeconds(server.pid) - waitedAtStart,
    loadCpu: (load.user + load.system) / 1e6,
  };
}

const pct = (cpu: number, phase: Phase) => `${((cpu / phase.seconds) * 100).toFixed(0)} %`;
/** CPU per item, in µs. */
const perItem = (cpu: number, items: number) => `${((cpu * 1e6) / items).toFixed(0)} µs`;

interface StreamFigures {
  streams: number;
  /** Server RSS after two full GCs: before any peer, every peer registered, every stream open. */
  before: number;
  registered: number;
  open: number;
  register: Phase;
  opening: Phase;
  /** The window of `intervals` ping bursts. */
  pinging: Phase;
  pingsReceived: number;
  streamsLost: number;
  /** Server RSS without a forced GC: before any peer (after the GCs of `before`), every stream open. */
  beforeUnforced: number;
  openUnforced: number;
}

/** The server's RSS as it is, without a forced GC: what a server in use holds between its own collections. */
function rssNow(server: ServerProcess): number {
  return Number(readFileSync(`/proc/${server.pid}/statm`, 'utf8').split(' ')[1]) * PAGE_BYTES;
}

/** Bytes per page, as /proc/<pid>/statm counts: 4 KiB on the machines this runs on (x86-64, arm64 with 4K pages). */
const PAGE_BYTES = 4096;

/** RSS after a second full GC: the first leaves a few MiB that the allocator returns to the system only later. */
async function settledRss(server: ServerProcess): Promise<number> {
  await server.rss();
  return server.rss();
}

/** A keep-alive connection (raw-http.ts) whose requests resolve when answered 200, and reject otherwise. */
interface Requester {
  request(method: string, path: string): Promise<void>;
  close(): void;
}

async function requester(base: string): Promise<Requester> {
  const connection = await connectHttp(base);
  const host = new URL(base).host;
  const waiting: { method: string; path: string; done: (e?: Error) => void }[] = [];
  connection.onResponse = (status, bytes, start, end) => {
    const w = waiting.shift();
    w?.done(status === 200 ? undefined : new Error(`${w.method} ${w.path}: ${status} ${bytes.toString('latin1', start, end)}`));
  };
  void connection.closed.then(() => {
    for (const w of waiting.splice(0)) w.done(new Error(`${w.method} ${w.path}: connection closed`));
  });
  return {
    request: (method, path) =>
      new Promise<void>((resolve, reject) => {
        waiting.push({ method, path, done: (e) => (e ? reject(e) : resolve()) });
        connection.send(encodeRequest(method, path, host, ''));
      }),
    close: () => connection.close(),
  };
}

/** Local addresses to open `count` streams from: none where 127/8 is not all loopback. */
function sourceAddresses(count: number): (string | undefined)[] {
  if (process.platform !== 'linux') return [undefined];
  return Array.from({ length: Math.ceil(count / STREAMS_PER_ADDRESS) }, (_, i) => `127.0.0.${i + 2}`);
}

/**
 * With `withPings` false, only the memory: registration and streams, then the RSS as the server holds it,
 * without a forced GC, beside the one after GC.
 */
async function measureStreams(plan: Plan, streamCount: number, pin: boolean, log: (line: string) => void, withPings = true): Promise<StreamFigures> {
  const sessions = streamCount / 2;
  const peers = ['device', 'viewer'] as const;
  const server = await startServer('switchboard', [process.execPath, join(import.meta.dir, 'servers/switchboard.ts')], {
    pin,
    env: { ...process.env, PING_INTERVAL_MS: String(plan.pingIntervalMs), PEER_TIMEOUT_MS: '600000' },
  });
  const pool: Requester[] = [];
  const streams: CountedStream[] = [];
  try {
    pool.push(...(await Promise.all(Array.from({ length: plan.registerConnections }, () => requester(server.base)))));
    // One session through every path first, so that what all streams share (code, pools) is not counted per stream.
    const [first] = pool;
    if (!first) throw new Error('no register connection');
    for (const peer of peers) await first.request('POST', `/register/warm-up/${peer}`);
    const warm = await Promise.all(peers.map((peer) => openCountedStream(server.base, `/events/warm-up/${peer}`)));
    for (const stream of warm) stream.close();
    await first.request('DELETE', '/session/warm-up');
    await Bun.sleep(200);
    const before = await settledRss(server);
    const beforeUnforced = rssNow(server);

    // Each connection registers whole sessions, the device before its viewer (the first peer in publishes).
    let nextSession = 0;
    const register = await timed(server, () =>
      Promise.all(
        pool.map(async (connection) => {
          while (nextSession < sessions) {
            const session = `cam-${nextSession++}`;
            for (const peer of peers) await connection.request('POST', `/register/${session}/${peer}`);
          }
        }),
      ),
    );
    log(`${thousands(streamCount)} peers registered in ${register.seconds.toFixed(1)} s`);
    const registered = await settledRss(server);

    const addresses = sourceAddresses(streamCount);
    const opening = await timed(server, () =>
      eachIndex(streamCount, plan.openWidth, async (index) => {
        const localAddress = addresses[index % addresses.length];
        streams.push(await openCountedStream(server.base, `/events/cam-${index >> 1}/${peers[index & 1]}`, { localAddress }));
      }),
    );
    log(`${thousands(streamCount)} streams open in ${opening.seconds.toFixed(1)} s`);
    await Bun.sleep(500);
    const openUnforced = rssNow(server);
    const open = await settledRss(server);
    const memory = { beforeUnforced, openUnforced };
    if (!withPings) return { streams: streamCount, before, registered, open, register, opening, pinging: register, pingsReceived: 0, streamsLost: 0, ...memory };

    // Wait for a ping burst to begin, then half an interval: the window then holds exactly `intervals` bursts.
    const pings = () => streams.reduce((n, s) => n + s.pings, 0);
    const seen = pings();
    const deadline = performance.now() + 2 * plan.pingIntervalMs + 5000;
    while (pings() - seen < streamCount / 2) {
      if (performance.now() > deadline) throw new Error(`no ping burst within ${2 * plan.pingIntervalMs} ms (${pings() - seen} pings)`);
      await Bun.sleep(Math.min(20, plan.pingIntervalMs / 10));
    }
    await Bun.sleep(plan.pingIntervalMs / 2);
    const pingsAtStart = pings();
    const pinging = await timed(server, () => Bun.sleep(plan.intervals * plan.pingIntervalMs));
    const pingsReceived = pings() - pingsAtStart;
    const streamsLost = streams.filter((s) => !s.open).length;
    return { streams: streamCount, before, registered, open, register, opening, pinging, pingsReceived, streamsLost, ...memory };
  } finally {
    // The server closes first: its side of each connection then waits out TIME_WAIT, and this side's
    // ports (bound explicitly, which connect() elsewhere will not share) are free at once for what runs next.
    await server.stop();
    for (const stream of streams) stream.close();
    for (const connection of pool) connection.close();
  }
}

function streamRows(f: StreamFigures, plan: Plan): Row[] {
  const bench = `${thousands(f.streams)} open SSE streams (${thousands(f.streams / 2)} sessions of device + viewer)`;
  const subject = 'switchboard SSE';
  const limited = f.streams < plan.streams ? `; ${thousands(f.streams)}, not ${thousands(plan.streams)}: the open-file limit here is ${thousands(openFileLimit())}` : '';
  const perStream = (f.open - f.before) / f.streams / KiB;
  const perPeer = (f.registered - f.before) / f.streams / KiB;
  const pingsPerStream = f.pingsReceived / f.streams / plan.intervals;
  const lost = f.streamsLost ? `; ${thousands(f.streamsLost)} streams ended early` : '';
  const total = f.register.seconds + f.opening.seconds;
  const waited = (f.register.serverWaited + f.opening.serverWaited) / total;
  return [
    {
      bench,
      subject,
      figure: 'RSS per open stream (after GC)',
      value: perStream,
      unit: 'KiB',
      goal: { op: '<=', value: 6 },
      note: `registration included; the stream alone ${(perStream - perPeer).toFixed(2)} KiB${limited}`,
    },
    { bench, subject, figure: 'RSS per registered peer, no stream', value: perPeer, unit: 'KiB', note: "a device's includes its held new-peer event" },
    {
      bench,
      subject,
      figure: `server CPU for pings every ${plan.pingIntervalMs / 1000} s`,
      value: (f.pinging.serverCpu / f.pinging.seconds) * 100,
      unit: '%',
      goal: { op: '<=', value: 5 },
      note: `of one core, over ${plan.intervals} intervals: ${perItem(f.pinging.serverCpu, f.streams * plan.intervals)} per ping, ${perItem(f.pinging.serverSystemCpu, f.streams * plan.intervals)} of it in the kernel; ${pingsPerStream.toFixed(3)} pings read per stream per interval; load CPU ${pct(f.pinging.loadCpu, f.pinging)}${lost}`,
    },
    {
      bench,
      subject,
      figure: 'time to register all, then open all',
      value: total,
      unit: 's',
      note: `register ${f.register.seconds.toFixed(1)} s on ${plan.registerConnections} keep-alive connections (server CPU ${pct(f.register.serverCpu, f.register)}, ${perItem(f.register.serverCpu, f.streams)} per peer; load ${pct(f.register.loadCpu, f.register)}); open ${f.opening.seconds.toFixed(1)} s, ${plan.openWidth} at once (server ${pct(f.opening.serverCpu, f.opening)}, ${perItem(f.opening.serverCpu, f.streams)} per stream; load ${pct(f.opening.loadCpu, f.opening)})`,
    },
    {
      bench,
      subject,
      figure: 'streams registered and opened per second',
      value: f.streams / total,
      unit: 'streams/s',
      note: `opening alone ${thousands(Math.round(f.streams / f.opening.seconds))}/s; at its CPU cost per peer, one whole server core would do ${thousands(Math.round(f.streams / (f.register.serverCpu + f.opening.serverCpu) / 10) * 10)}/s${Number.isFinite(waited) ? `; the server waited for its CPU ${(waited * 100).toFixed(0)} % of the time (other work on that core)` : ''}`,
    },
  ];
}

const WS_SUBJECTS: Partial<Record<ServerKind, string>> = { switchboard: 'switchboard WS', peerjs: 'PeerJS server' };

/** Open streams, their memory, ping CPU and opening rate; then idle WebSocket peers of switchboard and PeerJS. */
export async function benchStreams(options: StreamsOptions): Promise<Row[]> {
  const plan = options.smoke ? SMOKE : FULL;
  const pin = canPin();
  if (pin) {
    const affinity = readFileSync('/proc/self/status', 'utf8').match(/^Cpus_allowed_list:\s*(\S+)/m)?.[1];
    if (affinity !== '1') options.log(`the load runs on CPUs ${affinity}, not on CPU 1 alone: it may compete with the server`);
  }
  // Each stream is one descriptor in the server and one here, besides what this process has open already.
  const streamCount = Math.min(plan.streams, Math.floor((openFileLimit() - FD_MARGIN - openFiles()) / 100) * 100);
  if (streamCount < plan.streams) options.log(`the open-file limit is ${openFileLimit()}: ${streamCount} streams, not ${plan.streams}`);
  const unforced = await measureStreams(plan, Math.min(plan.unforcedStreams, streamCount), pin, options.log, false);
  const figures = await measureStreams(plan, streamCount, pin, options.log);
  options.log(JSON.stringify(figures));
  const rows = streamRows(figures, plan);
  const unforcedPerStream = (unforced.openUnforced - unforced.beforeUnforced) / unforced.streams / KiB;
  rows.splice(1, 0, {
    bench: rows[0]?.bench ?? '',
    subject: 'switchboard SSE',
    figure: `RSS per open stream at ${thousands(unforced.streams)} streams, no forced GC`,
    value: unforcedPerStream,
    unit: 'KiB',
    goal: { op: '<=', value: 6 },
    note: `registration included; a server of its own, RSS as it stood 0.5 s after the last stream opened; after GC the same server held ${((unforced.open - unforced.before) / unforced.streams / KiB).toFixed(2)} KiB per stream`,
  });

  const servers = ['switchboard', 'peerjs'] as const;
  const relay = await benchWsRelay({ servers, runs: 1, measure: ['memory'], idlePeers: plan.idlePeers, pin, log: options.log });
  for (const { server: kind, runs } of relay) {
    const bytes = runs[0]?.bytesPerPeer ?? Number.NaN;
    rows.push({
      bench: `${thousands(plan.idlePeers)} idle WebSocket peers (${thousands(plan.idlePeers / 2)} sessions of 2)`,
      subject: WS_SUBJECTS[kind] ?? kind,
      figure: 'RSS per idle peer (after GC)',
      value: bytes / KiB,
      unit: 'KiB',
      note: kind === 'switchboard' ? 'registration included' : undefined,
    });
  }
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean' } } });
  pinLoad((line) => console.error(line));
  const rows = await benchStreams({ smoke: Boolean(values.smoke), log: (line) => console.error(line) });
  console.log(formatRows(rows));
  process.exit(0);
}
