import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { until } from '../helpers';
import { scrape } from '../metrics/scrape';
import { openEvents, type SseConnection } from '../sse-client';
import { call, type Instance, startCluster } from './helpers';
import { RedisServer } from './redis-server';

let redis: RedisServer;
beforeAll(async () => {
  redis = await RedisServer.start();
});
afterAll(async () => {
  await redis.dispose();
});

describe('cluster: metrics', () => {
  test("each instance reports the peers it serves, so that they add up; the cluster's totals have their own names", async () => {
    const cluster = await startCluster(redis.url, 2, { peerTimeoutMs: 600_000 });
    const [a, b] = cluster.instances;
    if (!a || !b) throw new Error('two instances');
    let z: SseConnection | undefined;
    try {
      await call(a.url, 'POST', '/register/s/x');
      await call(b.url, 'POST', '/register/s/y');
      await call(b.url, 'POST', '/register/s/z');
      // z registered through B, reads on A: it is A's now.
      z = await openEvents(`${a.url}/events/s/z`);
      await call(a.url, 'POST', '/register/t/w');

      // The counts are read from Redis at most every 5 s, when scraped.
      cluster.clock.advance(5000);
      const gauges = async (instance: Instance) => {
        const m = await scrape(instance.url);
        const names = ['switchboard_sessions', 'switchboard_peers', 'switchboard_cluster_sessions', 'switchboard_cluster_peers'];
        return names.map((name) => m.value(name));
      };
      const expected = new Map([
        [a, [2, 3, 2, 4]],
        [b, [1, 1, 2, 4]],
      ]);
      for (const [instance, values] of expected) {
        await gauges(instance);
        await until(async () => JSON.stringify(await gauges(instance)) === JSON.stringify(values), `the gauges of ${instance.name}`);
        expect(await gauges(instance)).toEqual(values);
      }
      const bytes = await scrape(a.url);
      expect(bytes.value('switchboard_cluster_event_bytes')).toBeGreaterThan(bytes.value('switchboard_event_bytes'));
    } finally {
      z?.close();
      await cluster.stop();
    }
  });
});
