// Relay sessions across real server processes sharing a real redis-server, with media that is not a
// browser's: the simulated device (werift) publishes, a werift viewer counts the video it receives, and
// neither has its stream or its requests on the instance that carries the session's media. The owner is
// killed (kill -9) or stopped (SIGTERM): the media moves, and the viewer receives video again.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { type BenchDevice, type BenchViewer, benchDevice, benchViewer } from '../../bench/relay-peers';
import { until } from '../helpers';
import { type ServerProcess, spawnServer } from '../process-helpers';
import { bearer, call } from './helpers';
import { RedisServer } from './redis-server';

const root = new URL('../..', import.meta.url).pathname;
const ADMIN = 'admin-token-0123456789';

let redis: RedisServer;
beforeAll(async () => {
  redis = await RedisServer.start({ appendOnly: true });
});
afterAll(async () => {
  await redis.dispose();
});

/** How many relay sessions an instance carries, from its /metrics. */
async function owned(p: ServerProcess): Promise<number> {
  const text = await (await fetch(`${p.url}/metrics`)).text();
  return Number(/^switchboard_relay_owned_sessions (\d+)$/m.exec(text)?.[1] ?? 'NaN');
}

async function ownerAmong(processes: ServerProcess[]): Promise<ServerProcess> {
  let owner: ServerProcess | undefined;
  await until(async () => {
    const counts = await Promise.all(processes.map(owned));
    owner = counts.filter((n) => n === 1).length === 1 && counts.every((n) => n <= 1) ? processes[counts.indexOf(1)] : undefined;
    return owner !== undefined;
  }, 'exactly one owner');
  if (!owner) throw new Error('no owner');
  return owner;
}

/** Resolves once the viewer has received `packets` more video packets than it had. */
async function receivesMore(viewer: BenchViewer, packets: number, what: string, timeoutMs = 5000): Promise<void> {
  const from = viewer.counts().received;
  await until(() => viewer.counts().received >= from + packets, what, timeoutMs);
}

describe('relay sessions across processes', () => {
  for (const how of ['SIGKILL', 'SIGTERM'] as const) {
    test(`${how} of the owner: the media moves to another instance, and the viewer receives video again within 5 s`, async () => {
      const env = { REDIS_URL: redis.url, REDIS_PREFIX: `relay-${crypto.randomUUID().slice(0, 8)}`, RELAY_LEASE_MS: '1000', ADMIN_TOKEN: ADMIN, LOG_LEVEL: 'info' };
      const spawned: ServerProcess[] = [];
      let device: BenchDevice | undefined;
      let viewer: BenchViewer | undefined;
      try {
        for (let i = 0; i < 3; i++) spawned.push(await spawnServer([process.execPath, 'src/index.ts'], { cwd: root, env }));
        const created = await call((spawned[0] as ServerProcess).url, 'POST', '/sessions', { sessionId: 'cam', mode: 'relay' }, bearer(ADMIN));
        expect(created.status).toBe(201);
        const owner = await ownerAmong(spawned);
        const [x, y] = spawned.filter((p) => p !== owner) as [ServerProcess, ServerProcess];
        device = await benchDevice(x.url, 'cam', { kbps: 500, keyframeIntervalS: 1, ignorePli: false });
        viewer = await benchViewer(y.url, 'cam', 'v1');
        await receivesMore(viewer, 50, 'video through the first owner', 20_000);

        const stoppedAt = Date.now();
        if (how === 'SIGKILL') {
          owner.proc.kill('SIGKILL');
          await owner.proc.exited;
        } else {
          // The handover comes first: the new owner offers while the old one still forwards.
          expect(await owner.stop('SIGTERM')).toBe(0);
        }
        const next = await ownerAmong([x, y]);
        await receivesMore(viewer, 50, 'video through the new owner', 5000);
        const afterMs = Date.now() - stoppedAt;
        expect(afterMs).toBeLessThan(5000);
        expect(device.device.counters.answersSent).toBeGreaterThanOrEqual(2);
        const metrics = await (await fetch(`${next.url}/metrics`)).text();
        expect(next.output()).toContain('"msg":"relay session owned here"');
        expect(metrics).toContain(how === 'SIGKILL' ? 'switchboard_relay_placements_total{why="failover"} 1' : 'switchboard_relay_placements_total{why="handover"} 1');
        if (how === 'SIGTERM') expect(owner.output()).toContain('relay sessions handed over');
      } finally {
        await viewer?.close();
        await device?.close();
        for (const p of spawned) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
      }
    }, 60_000);
  }
});
