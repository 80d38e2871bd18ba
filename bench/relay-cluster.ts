// Relay sessions in a cluster: the relay benchmark's load (bench/relay.ts: simulated 1.5 Mbit/s H.264
// devices, werift viewers with a browser's RTCP, added in steps until loss or a full core) against 1, 2
// and 3 server processes sharing a redis-server, one relay session per instance (placement spreads them),
// each viewer registering through the next instance round the ring, as behind a load balancer that is not
// sticky. Then the failover time: the owner of a session with a device and werift viewers is killed
// (kill -9) ten times, each time measured from the kill to every viewer receiving video again.
//
//   bun bench/relay-cluster.ts [--instances 1,2,3] [--step 50] [--max 400] [--seconds 2] [--budget 40] [--kills 10] [--viewers 5]
//
// Every server is pinned to CPU 0 (taskset, when there is one) and the load to CPU 1, as in the relay
// benchmark: on a 2-core machine the instances share one core, so the capacity rows tell what the cluster
// costs over one process, not how it grows with machines. Redis runs unpinned and is not counted.
import { parseArgs } from 'node:util';
import { RedisServer } from '../test/cluster/redis-server';
import { createRelaySession, killAll, ownedSessions, ownerAmong, receivesMore, spawnInstances } from '../test/cluster/relay-instances';
import { until } from '../test/helpers';
import type { ServerProcess } from '../test/process-helpers';
import { pinLoad } from './process';
import { benchServerEnv, pinServer, type RelayCounters, type RelayOptions, type RelayResult, relayResult, relaySteps } from './relay';
import { type BenchDevice, type BenchViewer, benchDevice, benchViewer } from './relay-peers';
import { median } from './stats';
import type { Row } from './table';

const SERVER = [process.execPath, 'src/index.ts'];

/** The relay counters of the cluster's instances, summed from their /metrics. */
async function clusterCounters(instances: ServerProcess[]): Promise<RelayCounters> {
  const texts = await Promise.all(instances.map(async (p) => (await fetch(`${p.url}/metrics`)).text()));
  const total = (name: string) => texts.reduce((n, text) => n + Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0), 0);
  return {
    at: Date.now(),
    packetsIn: total('switchboard_relay_packets_in_total'),
    packetsOut: total('switchboard_relay_packets_out_total'),
    dropped: total('switchboard_relay_dropped_total'),
    retransmitted: total('switchboard_relay_retransmitted_total'),
    keyframeRequests: total('switchboard_relay_keyframe_requests_total'),
    keyframeCacheBytes: total('switchboard_relay_keyframe_cache_bytes'),
  };
}

/** The relay benchmark's steps against `count` instances, one relay session (and device) on each. */
export async function benchClusterCapacity(redis: RedisServer, count: number, options: RelayOptions): Promise<RelayResult> {
  const instances = await spawnInstances(redis.url, count, { ...benchServerEnv(options.max), ...options.serverEnv }, [...pinServer(), ...SERVER]);
  const devices: BenchDevice[] = [];
  try {
    const sessions = Array.from({ length: count }, (_, i) => `bench-${i}`);
    // Placement goes by relay peers: each session gets its device before the next is created, so that
    // the next one finds more room on another instance.
    for (const [i, id] of sessions.entries()) {
      await createRelaySession(instances[0] as ServerProcess, id);
      await until(async () => (await Promise.all(instances.map(ownedSessions))).reduce((n, o) => n + o, 0) === i + 1, `session ${id} placed`);
      // Each device signals through another instance than the one that placed it: its requests cross to the owner.
      const through = instances[(i + 1) % count] as ServerProcess;
      devices.push(await benchDevice(through.url, id, { kbps: options.kbps, keyframeIntervalS: options.keyframeIntervalS, ignorePli: options.ignorePli }));
    }
    const owned = await Promise.all(instances.map(ownedSessions));
    if (owned.some((n) => n !== 1)) options.log(`sessions placed ${owned.join(', ')} (not one on each instance)`);
    const run = await relaySteps(options, {
      pids: instances.map((p) => p.proc.pid),
      viewerAt: (i) => ({ url: (instances[(i + 1) % count] as ServerProcess).url, sessionId: sessions[i % count] as string }),
      counters: () => clusterCounters(instances),
      published: () => devices.reduce((n, d) => n + d.packets(), 0),
    });
    return relayResult(options, run);
  } finally {
    await Promise.all(devices.map((d) => d.close()));
    await killAll(instances);
  }
}

export interface FailoverResult {
  /** Milliseconds from each kill to every viewer receiving video again. */
  times: number[];
  /** Why fewer kills than asked were measured, if so. */
  stopped?: string;
}

/**
 * Kills the owner of one relay session `kills` times. The device and the viewers signal through an
 * instance that never carries media (RELAY_CAPACITY=1: placement always finds more room elsewhere), so
 * their streams outlive every kill; three instances carry media, the one killed replaced by a fresh one.
 */
export async function benchFailover(redis: RedisServer, kills: number, viewerCount: number, log: (line: string) => void): Promise<FailoverResult> {
  // One cluster: every instance started with the same key prefix.
  const shared = { ...benchServerEnv(viewerCount), REDIS_PREFIX: `failover-${crypto.randomUUID().slice(0, 8)}` };
  const [front] = await spawnInstances(redis.url, 1, { ...shared, RELAY_CAPACITY: '1' });
  if (!front) throw new Error('no instance started');
  const media: ServerProcess[] = [];
  const everyone = () => [front, ...media];
  let device: BenchDevice | undefined;
  const viewers: BenchViewer[] = [];
  const times: number[] = [];
  let stopped: string | undefined;
  try {
    media.push(...(await spawnInstances(redis.url, 3, shared, [...pinServer(), ...SERVER])));
    await createRelaySession(front, 'fail');
    await ownerAmong(media);
    device = await benchDevice(front.url, 'fail', { kbps: 1500, keyframeIntervalS: 1, ignorePli: false });
    for (let i = 0; i < viewerCount; i++) viewers.push(await benchViewer(front.url, 'fail', `v${i + 1}`));
    await Promise.all(viewers.map((v) => receivesMore(v, 50, 'video before the first kill', 20_000)));
    for (let k = 0; k < kills; k++) {
      const owner = await ownerAmong(everyone());
      if (owner === front) {
        stopped = 'the front instance became the owner';
        break;
      }
      const killedAt = Date.now();
      owner.proc.kill('SIGKILL');
      await owner.proc.exited;
      media.splice(media.indexOf(owner), 1);
      try {
        const back = await Promise.all(viewers.map((v) => receivesMore(v, 50, `video after kill ${k + 1}`, 15_000)));
        times.push(Math.max(...back) - killedAt);
        log(`kill ${k + 1}: every viewer receives again after ${times.at(-1)} ms`);
      } catch (e) {
        stopped = `kill ${k + 1}: ${(e as Error).message}`;
        break;
      }
      media.push(...(await spawnInstances(redis.url, 1, shared, [...pinServer(), ...SERVER])));
    }
  } finally {
    await Promise.all(viewers.map((v) => v.close()));
    await device?.close();
    await killAll(everyone());
  }
  return { times, stopped };
}

interface ClusterOptions {
  smoke: boolean;
  log: (line: string) => void;
  instances?: number[];
  step?: number;
  max?: number;
  seconds?: number;
  budgetS?: number;
  kills?: number;
  viewers?: number;
}

/** The harness's rows: capacity with 1, 2 and 3 instances, and failover p50 and max. A few minutes; `smoke` takes seconds. */
export async function benchRelayClusterRows(options: ClusterOptions): Promise<Row[]> {
  const { smoke, log } = options;
  const counts = options.instances ?? (smoke ? [2] : [1, 2, 3]);
  const relayOptions: RelayOptions = {
    budgetS: options.budgetS ?? (smoke ? 8 : 40),
    step: options.step ?? (smoke ? 2 : 50),
    max: options.max ?? (smoke ? 2 : 400),
    seconds: options.seconds ?? (smoke ? 1 : 2),
    connectWidth: 10,
    kbps: 1500,
    keyframeIntervalS: 2,
    ignorePli: false,
    serverEnv: {},
    log,
  };
  const redis = await RedisServer.start();
  const rows: Row[] = [];
  try {
    const bench = 'relay cluster (device simulator: H.264 720p, 1.5 Mbit/s; one session per instance, Redis)';
    for (const count of counts) {
      const result = await benchClusterCapacity(redis, count, { ...relayOptions, log: (line) => log(`${count} instances: ${line}`) });
      const clean = result.clean;
      const last = result.steps.at(-1);
      const bound = result.generatorBound ? 'bounded by the load generator' : `stopped at ${result.stopped}`;
      rows.push({
        bench,
        subject: `switchboard, ${count} instance${count > 1 ? 's' : ''}`,
        figure: 'viewers at the last clean step (loss ≤ 0.5 %)',
        value: clean?.viewers ?? 0,
        unit: 'viewers',
        note: clean
          ? `servers' CPU ${clean.cpuPct.toFixed(0)} % of one core together (${result.viewersPerCore} viewers per core), ${clean.cpuUsPerPacket.toFixed(1)} µs/packet, load CPU ${clean.generatorCpuPct.toFixed(0)} %; ${bound}`
          : `no clean step; ${last?.viewers ?? 0} viewers: loss ${last?.lossPct.toFixed(2) ?? '—'} %; ${bound}`,
      });
    }
    const failover = await benchFailover(redis, options.kills ?? (smoke ? 1 : 10), options.viewers ?? (smoke ? 2 : 5), (line) => log(`failover: ${line}`));
    const sorted = [...failover.times].sort((a, b) => a - b);
    const about = `${failover.times.length} kill -9 of the owner, ${options.viewers ?? (smoke ? 2 : 5)} werift viewers, RELAY_LEASE_MS=1000${failover.stopped ? `; stopped: ${failover.stopped}` : ''}`;
    const subject = 'switchboard, 3 instances carrying media';
    const fbench = 'relay failover (kill -9 → every viewer receiving video again)';
    rows.push({ bench: fbench, subject, figure: 'p50', value: sorted.length ? median(sorted) : Number.NaN, unit: 'ms', note: about });
    rows.push({
      bench: fbench,
      subject,
      figure: 'max',
      value: sorted.at(-1) ?? Number.NaN,
      unit: 'ms',
      goal: { op: '<=', value: 5000 },
      note: sorted.map((t) => String(t)).join(' · '),
    });
  } finally {
    await redis.dispose();
  }
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      instances: { type: 'string' },
      step: { type: 'string' },
      max: { type: 'string' },
      seconds: { type: 'string' },
      budget: { type: 'string' },
      kills: { type: 'string' },
      viewers: { type: 'string' },
      smoke: { type: 'boolean', default: false },
    },
  });
  const log = (line: string) => console.log(line);
  pinLoad(log);
  const number = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const rows = await benchRelayClusterRows({
    smoke: values.smoke ?? false,
    log,
    instances: values.instances?.split(',').map(Number),
    step: number(values.step),
    max: number(values.max),
    seconds: number(values.seconds),
    budgetS: number(values.budget),
    kills: number(values.kills),
    viewers: number(values.viewers),
  });
  console.log(JSON.stringify(rows, null, 2));
}
