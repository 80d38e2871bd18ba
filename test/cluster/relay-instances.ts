// Server processes of one cluster sharing a redis-server, and what tests and benchmarks learn of them from
// outside: which one carries a relay session's media (its /metrics), and its relay counters.
import type { BenchViewer } from '../../bench/relay-peers';
import { until } from '../helpers';
import { type ServerProcess, spawnServer } from '../process-helpers';

const root = new URL('../..', import.meta.url).pathname;

/** The admin token the instances are started with: relay sessions are created before anyone joins. */
export const ADMIN_TOKEN = 'admin-token-0123456789';

/**
 * `count` instances (`bun src/index.ts`) on 127.0.0.1 and free ports, started together, sharing `redisUrl`
 * under a prefix of their own. `env` adds settings; a lease of 1 s makes a failover quick.
 */
export async function spawnInstances(
  redisUrl: string,
  count: number,
  env: Record<string, string> = {},
  cmd: string[] = [process.execPath, 'src/index.ts'],
): Promise<ServerProcess[]> {
  const shared = { REDIS_URL: redisUrl, REDIS_PREFIX: `relay-${crypto.randomUUID().slice(0, 8)}`, RELAY_LEASE_MS: '1000', ADMIN_TOKEN, LOG_LEVEL: 'info', ...env };
  const started = await Promise.allSettled(Array.from({ length: count }, () => spawnServer(cmd, { cwd: root, env: shared })));
  const spawned = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    for (const p of spawned) p.proc.kill('SIGKILL');
    throw failed.reason;
  }
  return spawned;
}

/** Kills every instance still running (SIGKILL: a test's end needs no drain) and waits for them. */
export async function killAll(processes: ServerProcess[]): Promise<void> {
  await Promise.all(processes.map((p) => p.stop('SIGKILL')));
}

/** One unlabelled sample of an instance's /metrics (NaN when it has none). */
export async function metric(p: ServerProcess, name: string): Promise<number> {
  const text = await (await fetch(`${p.url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 'NaN');
}

/** How many relay sessions an instance carries (the leases it holds). */
export const ownedSessions = (p: ServerProcess) => metric(p, 'switchboard_relay_owned_sessions');

/**
 * The one instance among `processes` that carries the cluster's one relay session, once exactly one does
 * and no other carries any.
 */
export async function ownerAmong(processes: ServerProcess[], timeoutMs = 10_000): Promise<ServerProcess> {
  let owner: ServerProcess | undefined;
  let counts: number[] = [];
  await until(
    async () => {
      counts = await Promise.all(processes.map(ownedSessions));
      owner = counts.filter((n) => n === 1).length === 1 && counts.every((n) => n <= 1) ? processes[counts.indexOf(1)] : undefined;
      return owner !== undefined;
    },
    'exactly one owner',
    timeoutMs,
    () => `sessions owned: ${counts.join(', ')}`,
  );
  if (!owner) throw new Error('no owner');
  return owner;
}

/** Creates relay session `sessionId` through `p`'s admin API: placed on an instance before anyone joins. */
export async function createRelaySession(p: ServerProcess, sessionId: string): Promise<void> {
  const res = await fetch(`${p.url}/sessions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ sessionId, mode: 'relay' }),
  });
  if (res.status !== 201) throw new Error(`POST /sessions ${sessionId}: ${res.status} ${await res.text()}`);
}

/** Runs `fn`; when it fails, the error carries the newest log lines of every instance `processes()` names then. */
export async function withLogs<T>(processes: () => ServerProcess[], fn: () => Promise<T>, lines = 25): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const logs = processes().map((p, i) => `--- instance ${i} (${p.url}, exit ${p.proc.exitCode ?? 'running'}):\n${p.output().trimEnd().split('\n').slice(-lines).join('\n')}`);
    throw new Error(`${(e as Error).message}\n${logs.join('\n')}`);
  }
}

/** Resolves, with the time, once a werift viewer has received `packets` more video packets than it had. */
export async function receivesMore(viewer: BenchViewer, packets: number, what: string, timeoutMs = 5000): Promise<number> {
  const from = viewer.counts().received;
  await until(() => viewer.counts().received >= from + packets, what, timeoutMs);
  return Date.now();
}
