import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { until } from '../helpers';
import { type ServerProcess, spawnServer } from '../process-helpers';
import { ofType, openEvents } from '../sse-client';
import { bearer, call } from './helpers';
import { RedisServer } from './redis-server';

const root = new URL('../..', import.meta.url).pathname;

let redis: RedisServer;
beforeAll(async () => {
  redis = await RedisServer.start();
});
afterAll(async () => {
  await redis.dispose();
});

describe('cluster: real processes', () => {
  test('kill -9 the instance holding a stream: the peer resumes on another with nothing lost', async () => {
    const env = { REDIS_URL: redis.url, REDIS_PREFIX: `kill-${crypto.randomUUID().slice(0, 8)}`, AUTH_MODE: 'token' };
    const spawned: ServerProcess[] = [];
    try {
      for (let i = 0; i < 3; i++) spawned.push(await spawnServer([process.execPath, 'src/index.ts'], { cwd: root, env }));
      const [one, two, three] = spawned as [ServerProcess, ServerProcess, ServerProcess];
      for (const p of spawned) expect((await call(p.url, 'GET', '/readyz')).body).toEqual({ status: 'ready', checks: { redis: 'ok' } });

      const x = (await call(one.url, 'POST', '/register/s/x')).body;
      const y = (await call(two.url, 'POST', '/register/s/y')).body;
      const xStream = await openEvents(`${one.url}/events/s/x?lastEventId=${x.lastEventId}`, { headers: bearer(x.token) });
      const yStream = await openEvents(`${three.url}/events/s/y?lastEventId=${y.lastEventId}`, { headers: bearer(y.token) });
      await xStream.next(ofType('new-peer', 'y'));
      for (let n = 1; n <= 3; n++) expect((await call(three.url, 'POST', '/message/s/y', { target: 'x', type: 'm', payload: n }, bearer(y.token))).status).toBe(200);
      for (let n = 1; n <= 3; n++) await xStream.next(ofType('m'));

      // The process holding x's stream dies without a word.
      one.proc.kill('SIGKILL');
      await one.proc.exited;
      await xStream.ended;
      // Meanwhile y goes on sending, through the surviving instances: held for x.
      for (let n = 4; n <= 8; n++) {
        const sent = await call(n % 2 ? two.url : three.url, 'POST', '/message/s/y', { target: 'x', type: 'm', payload: n }, bearer(y.token));
        expect(sent.status).toBe(202);
      }
      // x's client reconnects, through the load balancer, to another instance.
      const resumed = await openEvents(`${two.url}/events/s/x`, { lastEventId: xStream.lastEventId, headers: bearer(x.token) });
      expect(resumed.status).toBe(200);
      const payloads = [];
      for (let n = 4; n <= 8; n++) payloads.push((await resumed.next(ofType('m'))).json.payload);
      expect(payloads).toEqual([4, 5, 6, 7, 8]);
      const all = [...xStream.events, ...resumed.events].map((e) => Number(e.id));
      expect(all).toEqual(all.map((_, i) => (all[0] as number) + i));

      // And x answers through the third instance to y, whose stream never moved.
      expect((await call(three.url, 'POST', '/message/s/x', { target: 'y', type: 'answer', payload: 'ok' }, bearer(x.token))).status).toBe(200);
      expect((await yStream.next(ofType('answer'))).json).toEqual({ type: 'answer', payload: 'ok', senderId: 'x' });
      resumed.close();
      yStream.close();

      // A graceful stop of the others: drained, exit 0.
      expect(await two.stop('SIGTERM')).toBe(0);
      expect(await three.stop('SIGTERM')).toBe(0);
      await until(() => spawned.every((p) => p.proc.exitCode !== null || p.proc.signalCode !== null), 'nothing left running');
    } finally {
      for (const p of spawned) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
    }
  });

  test('an instance started while Redis is away is not ready, answers 503, and serves once Redis comes', async () => {
    const away = await RedisServer.start();
    await away.stop();
    const env = { REDIS_URL: away.url };
    const server = await spawnServer([process.execPath, 'src/index.ts'], { cwd: root, env });
    try {
      expect((await call(server.url, 'GET', '/readyz')).body).toEqual({ status: 'not_ready', checks: { redis: 'failing' } });
      expect((await call(server.url, 'GET', '/healthz')).status).toBe(200);
      const refused = await call(server.url, 'POST', '/register/s/x');
      expect(refused.status).toBe(503);
      expect(refused.body.error).toBe('backend_unavailable');
      await away.start();
      await until(async () => (await call(server.url, 'GET', '/readyz')).status === 200, 'ready', 15_000);
      expect((await call(server.url, 'POST', '/register/s/x')).status).toBe(200);
      expect(server.output()).toContain('cannot reach Redis');
      expect(server.output()).not.toContain(away.url);
    } finally {
      await server.stop('SIGKILL');
      await away.dispose();
    }
  });
});
