// Relay sessions across real server processes sharing a real redis-server, with media that is not a
// browser's: the simulated device (werift) publishes, a werift viewer counts the video it receives, and
// neither has its stream or its requests on the instance that carries the session's media. The owner is
// killed (kill -9) or stopped (SIGTERM): the media moves, and the viewer receives video again.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { type BenchDevice, type BenchViewer, benchDevice, benchViewer } from '../../bench/relay-peers';
import type { ServerProcess } from '../process-helpers';
import { bearer, call } from './helpers';
import { RedisServer } from './redis-server';
import { ADMIN_TOKEN, ownerAmong, receivesMore, spawnInstances } from './relay-instances';

let redis: RedisServer;
beforeAll(async () => {
  redis = await RedisServer.start();
});
afterAll(async () => {
  await redis.dispose();
});

describe('relay sessions across processes', () => {
  for (const how of ['SIGKILL', 'SIGTERM'] as const) {
    test(`${how} of the owner: the media moves to another instance, and the viewer receives video again within 5 s`, async () => {
      const spawned: ServerProcess[] = [];
      let device: BenchDevice | undefined;
      let viewer: BenchViewer | undefined;
      try {
        spawned.push(...(await spawnInstances(redis.url, 3)));
        const created = await call((spawned[0] as ServerProcess).url, 'POST', '/sessions', { sessionId: 'cam', mode: 'relay' }, bearer(ADMIN_TOKEN));
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
