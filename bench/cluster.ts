// Cross-instance relay: throughput and latency of POST /message when the sender's instance is not the
// one holding the receiver's stream (two processes sharing a Redis), next to one process alone.
// 100 peer pairs, ~300-byte messages. Then what Redis holds per peer and per event. Bounded: about a
// minute with the defaults.
// Usage: bun bench/cluster.ts [runs, default 3] [seconds per throughput run, default 3]
import { cpus, loadavg } from 'node:os';
import { RedisClient } from 'bun';
import { RedisServer } from '../test/cluster/redis-server';
import { type ServerProcess, spawnServer } from '../test/process-helpers';
import { LIMITS_OFF } from './limits-off';
import { median, quantile } from './stats';
import type { Row } from './table';

export interface ClusterBenchOptions {
  pairs: number;
  runs: number;
  /** Length of each throughput run. */
  seconds: number;
  /** Messages per second, all pairs together, while latency is measured. */
  latencyRate: number;
  /** Messages sent while latency is measured, per run. */
  latencyMessages: number;
}

export interface ModeResult {
  mode: 'single' | 'cluster';
  /** Median over the runs: messages written to their streams per second. */
  messagesPerS: number;
  /** Median over the runs of each run's percentile, milliseconds from the POST sent to the event read. */
  p50Ms: number;
  p99Ms: number;
  runs: RunResult[];
  /** Cluster only: commands Redis ran per message relayed (scripts and the commands inside them), median. */
  redisCommandsPerMessage?: number;
  /** Cluster only: Redis's CPU time per message relayed, microseconds, median. */
  redisCpuUsPerMessage?: number;
}

interface RunResult {
  messagesPerS: number;
  p50Ms: number;
  p99Ms: number;
  /** Messages sent in the run, both phases. */
  messages: number;
}

export interface ClusterBenchReport {
  options: ClusterBenchOptions;
  /** What Redis holds: bytes per registered peer, and per ~300-byte event held. */
  redisMemory: { bytesPerPeer: number; bytesPerEvent: number };
  /** `uptime`'s load averages before and after. */
  loadBefore: number[];
  loadAfter: number[];
  cores: number;
  results: ModeResult[];
}

const DEFAULTS: ClusterBenchOptions = { pairs: 100, runs: 3, seconds: 3, latencyRate: 500, latencyMessages: 1000 };

const root = new URL('..', import.meta.url).pathname;
/** Limits off: the load comes from one address and one machine. */
const UNLIMITED = {
  ...LIMITS_OFF,
  MAX_QUEUE: '4096',
};
/** An ICE candidate's worth of payload: the message body is about 300 bytes. */
const CANDIDATE = 'candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 192.168.1.2 rport 46154 generation 0 ufrag sWxv network-cost 999';

/** Reads one receiver's stream, calling `onEvent` with each message event's data. */
async function readStream(url: string, onEvent: (data: string) => void, signal: AbortSignal): Promise<void> {
  const res = await fetch(url, { signal, headers: { accept: 'text/event-stream' } });
  if (!res.ok || !res.body) throw new Error(`stream ${url}: ${res.status}`);
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split('\n').find((l) => l.startsWith('data: '));
        if (data) onEvent(data.slice(6));
      }
    }
  } catch {
    // Aborted at the end of the run.
  }
}

/** Redis's CPU time so far (user and system), seconds, from INFO cpu. */
export async function redisCpuSeconds(redis: RedisClient): Promise<number> {
  const info = (await redis.send('INFO', ['cpu'])) as string;
  return Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1]) + Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1]);
}

interface Setup {
  sendTo: string;
  streamFrom: string;
  stop(): Promise<void>;
}

async function single(): Promise<Setup> {
  const server = await spawnServer([process.execPath, 'src/index.ts'], { cwd: root, env: UNLIMITED });
  return { sendTo: server.url, streamFrom: server.url, stop: async () => void (await server.stop()) };
}

async function cluster(redis: RedisServer): Promise<Setup> {
  const env = { ...UNLIMITED, REDIS_URL: redis.url, REDIS_PREFIX: `bench-${crypto.randomUUID().slice(0, 8)}` };
  const servers: ServerProcess[] = [];
  servers.push(await spawnServer([process.execPath, 'src/index.ts'], { cwd: root, env }));
  servers.push(await spawnServer([process.execPath, 'src/index.ts'], { cwd: root, env }));
  const [a, b] = servers as [ServerProcess, ServerProcess];
  return { sendTo: a.url, streamFrom: b.url, stop: async () => void (await Promise.all(servers.map((s) => s.stop()))) };
}

/** One run: throughput for `seconds` with every pair sending back to back, then paced latency. */
async function run(setup: Setup, options: ClusterBenchOptions, runIndex: number): Promise<RunResult> {
  const session = (i: number) => `bench-${runIndex}-${i}`;
  const abort = new AbortController();
  let received = 0;
  const latencies: number[] = [];
  let measuring = false;
  const readers: Promise<void>[] = [];
  for (let i = 0; i < options.pairs; i++) {
    for (const peer of ['sender', 'receiver']) {
      const res = await fetch(`${setup.sendTo}/register/${session(i)}/${peer}`, { method: 'POST' });
      if (!res.ok) throw new Error(`register: ${res.status} ${await res.text()}`);
    }
    readers.push(
      readStream(
        `${setup.streamFrom}/events/${session(i)}/receiver`,
        (data) => {
          if (!data.includes('"ice-candidate"')) return;
          received++;
          if (measuring) latencies.push(performance.now() - (JSON.parse(data) as { payload: { t: number } }).payload.t);
        },
        abort.signal,
      ),
    );
  }
  const body = (t: number) => JSON.stringify({ target: 'receiver', type: 'ice-candidate', payload: { candidate: CANDIDATE, sdpMid: '0', t } });
  const send = async (i: number) => {
    const res = await fetch(`${setup.sendTo}/message/${session(i)}/sender`, { method: 'POST', body: body(performance.now()) });
    await res.arrayBuffer();
    if (res.status >= 300) throw new Error(`message: ${res.status}`);
  };

  // Throughput: every pair sends back to back (each POST answered before the next, as a client does).
  const start = performance.now();
  const end = start + options.seconds * 1000;
  let sent = 0;
  await Promise.all(
    Array.from({ length: options.pairs }, async (_, i) => {
      while (performance.now() < end) {
        await send(i);
        sent++;
      }
    }),
  );
  const deadline = performance.now() + 10_000;
  while (received < sent && performance.now() < deadline) await Bun.sleep(5);
  const messagesPerS = received / ((performance.now() - start) / 1000);

  // Latency: paced well below the throughput, so that it measures a message's way, not a queue.
  measuring = true;
  const interval = 1000 / options.latencyRate;
  const paced: Promise<void>[] = [];
  const t0 = performance.now();
  for (let n = 0; n < options.latencyMessages; n++) {
    const due = t0 + n * interval;
    const wait = due - performance.now();
    if (wait > 0) await Bun.sleep(wait);
    paced.push(send(n % options.pairs));
  }
  await Promise.all(paced);
  const latencyDeadline = performance.now() + 10_000;
  while (latencies.length < options.latencyMessages && performance.now() < latencyDeadline) await Bun.sleep(5);
  abort.abort();
  await Promise.all(readers);
  return { messagesPerS, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99), messages: sent + options.latencyMessages };
}

/** Redis's used memory for `pairs` sessions of two peers, then with 40 events held for each receiver. */
async function redisMemory(redis: RedisServer, stats: RedisClient, pairs: number): Promise<ClusterBenchReport['redisMemory']> {
  const used = async () => Number(/used_memory:(\d+)/.exec((await stats.send('INFO', ['memory'])) as string)?.[1]);
  const setup = await cluster(redis);
  try {
    const base = await used();
    for (let i = 0; i < pairs; i++) {
      for (const peer of ['sender', 'receiver']) await fetch(`${setup.sendTo}/register/memory-${i}/${peer}`, { method: 'POST' });
    }
    const registered = await used();
    const body = JSON.stringify({ target: 'receiver', type: 'ice-candidate', payload: { candidate: CANDIDATE, sdpMid: '0' } });
    for (let i = 0; i < pairs; i++) {
      for (let n = 0; n < 40; n++) await (await fetch(`${setup.sendTo}/message/memory-${i}/sender`, { method: 'POST', body })).arrayBuffer();
    }
    const held = await used();
    return { bytesPerPeer: (registered - base) / (2 * pairs), bytesPerEvent: (held - registered) / (40 * pairs) };
  } finally {
    await setup.stop();
  }
}

/** Measures both modes, alternating them run by run so that a change in the machine's load hits both alike. */
export async function clusterBench(partial: Partial<ClusterBenchOptions> = {}): Promise<ClusterBenchReport> {
  const options = { ...DEFAULTS, ...partial };
  const loadBefore = loadavg();
  const redis = await RedisServer.start();
  const stats = new RedisClient(redis.url);
  const commands = async () => Number(/total_commands_processed:(\d+)/.exec((await stats.send('INFO', ['stats'])) as string)?.[1]);
  const cpuS = () => redisCpuSeconds(stats);
  const cpuPerMessage: number[] = [];
  let redisMemoryFigures: ClusterBenchReport['redisMemory'] = { bytesPerPeer: 0, bytesPerEvent: 0 };
  const runs: Record<'single' | 'cluster', ModeResult['runs']> = { single: [], cluster: [] };
  const perMessage: number[] = [];
  try {
    for (let r = 0; r < options.runs; r++) {
      for (const mode of ['single', 'cluster'] as const) {
        const setup = mode === 'single' ? await single() : await cluster(redis);
        try {
          const [before, cpuBefore] = [await commands(), await cpuS()];
          const result = await run(setup, options, r);
          if (mode === 'cluster') {
            perMessage.push(((await commands()) - before) / result.messages);
            cpuPerMessage.push((((await cpuS()) - cpuBefore) * 1e6) / result.messages);
          }
          runs[mode].push(result);
        } finally {
          await setup.stop();
        }
      }
    }
    redisMemoryFigures = await redisMemory(redis, stats, options.pairs);
  } finally {
    stats.close();
    await redis.dispose();
  }
  const results = (['single', 'cluster'] as const).map((mode) => ({
    mode,
    messagesPerS: median(runs[mode].map((x) => x.messagesPerS)),
    p50Ms: median(runs[mode].map((x) => x.p50Ms)),
    p99Ms: median(runs[mode].map((x) => x.p99Ms)),
    runs: runs[mode],
    ...(mode === 'cluster' ? { redisCommandsPerMessage: median(perMessage), redisCpuUsPerMessage: median(cpuPerMessage) } : {}),
  }));
  return { options, redisMemory: redisMemoryFigures, loadBefore, loadAfter: loadavg(), cores: cpus().length, results };
}

/** `bun run bench`'s rows: 2 runs of 3 s per mode (about 40 s); a smoke run takes a few seconds. */
export async function benchClusterRows(options: { smoke: boolean; log: (line: string) => void }): Promise<Row[]> {
  const report = await clusterBench(options.smoke ? { pairs: 4, runs: 1, seconds: 0.5, latencyMessages: 50 } : { runs: 2, seconds: 3 });
  const single = report.results.find((r) => r.mode === 'single');
  const cluster = report.results.find((r) => r.mode === 'cluster');
  if (!single || !cluster) throw new Error('cluster bench: a mode is missing');
  for (const r of report.results)
    options.log(`${r.mode}: ${r.runs.map((x) => x.messagesPerS.toFixed(0)).join(' / ')} msg/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms`);
  const bench = `cross-instance relay (${report.options.pairs} pairs, ~300 B, one POST in flight per sender; two instances and Redis on ${report.cores} cores)`;
  const runs = (r: ModeResult) =>
    `median of ${r.runs.length}: ${r.runs.map((x) => `${(x.messagesPerS / 1000).toFixed(1)} k`).join(' / ')}; p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms at ${report.options.latencyRate}/s`;
  return [
    { bench, subject: 'switchboard, one instance', figure: 'throughput', value: single.messagesPerS, unit: 'msg/s', note: runs(single) },
    { bench, subject: 'switchboard, sender and receiver on two instances', figure: 'throughput', value: cluster.messagesPerS, unit: 'msg/s', note: runs(cluster) },
    { bench, subject: 'cross-instance ÷ one instance', figure: 'throughput ratio', value: cluster.messagesPerS / single.messagesPerS, unit: '×', goal: { op: '>=', value: 0.7 } },
    {
      bench,
      subject: 'Redis',
      figure: 'CPU per cross-instance message',
      value: cluster.redisCpuUsPerMessage ?? Number.NaN,
      unit: 'µs',
      goal: { op: '<=', value: 25 },
      note: `${cluster.redisCommandsPerMessage?.toFixed(1)} commands per message (scripts and the commands inside them); from INFO cpu`,
    },
    {
      bench,
      subject: 'Redis',
      figure: 'memory per registered peer',
      value: report.redisMemory.bytesPerPeer,
      unit: 'B',
      note: `${report.redisMemory.bytesPerEvent.toFixed(0)} B per ~300-byte event held`,
    },
  ];
}

if (import.meta.main) {
  const runs = Number(process.argv[2] ?? DEFAULTS.runs);
  const seconds = Number(process.argv[3] ?? DEFAULTS.seconds);
  const report = await clusterBench({ runs, seconds });
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(', ');
  console.log(`${report.options.pairs} pairs, ~300-byte messages, ${report.options.runs} runs of ${report.options.seconds} s; ${report.cores} cores`);
  console.log(`load average before: ${load(report.loadBefore)}; after: ${load(report.loadAfter)}`);
  console.log('mode     msg/s (median)  p50 ms  p99 ms  (runs: msg/s)');
  for (const r of report.results) {
    const each = r.runs.map((x) => x.messagesPerS.toFixed(0)).join(' ');
    console.log(`${r.mode.padEnd(8)} ${r.messagesPerS.toFixed(0).padStart(14)}  ${r.p50Ms.toFixed(2).padStart(6)}  ${r.p99Ms.toFixed(2).padStart(6)}  (${each})`);
  }
  const cluster = report.results.find((r) => r.mode === 'cluster');
  console.log(`Redis per message relayed in the cluster (median): ${cluster?.redisCommandsPerMessage?.toFixed(1)} commands, ${cluster?.redisCpuUsPerMessage?.toFixed(1)} µs CPU`);
  console.log(
    `Redis memory: ${report.redisMemory.bytesPerPeer.toFixed(0)} bytes per registered peer, ${report.redisMemory.bytesPerEvent.toFixed(0)} bytes per ~300-byte event held`,
  );
}
