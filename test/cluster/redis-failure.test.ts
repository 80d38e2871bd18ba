import { describe, expect, test } from 'bun:test';
import { RedisClient } from 'bun';
import { peerAddress, redisKey } from '../../src/cluster/protocol';
import { RedisLink } from '../../src/cluster/redis-link';
import { LIBRARY } from '../../src/cluster/scripts';
import { SignalError } from '../../src/errors';
import { until } from '../helpers';
import { ofType, openEvents } from '../sse-client';
import { call, startCluster } from './helpers';
import { RedisServer } from './redis-server';

/** The names of the function libraries Redis holds, sorted. */
const librariesIn = async (admin: RedisClient) => ((await admin.send('FUNCTION', ['LIST'])) as { library_name: string }[]).map((library) => library.library_name).sort();

describe("RedisLink: Bun's client as it behaves", () => {
  test('after Redis restarts it reconnects by itself, subscribed exactly once, and says so once', async () => {
    const redis = await RedisServer.start();
    const received: string[] = [];
    let reconnects = 0;
    const link = new RedisLink({ url: redis.url, channel: 'link-test', onMessage: (m) => received.push(m), onReconnect: () => reconnects++ });
    const publisher = () => new RedisClient(redis.url, { autoReconnect: false });
    try {
      await link.start();
      expect(link.isUp).toBe(true);
      // Commands run while the link is subscribed: the subscriber is a connection of its own
      // (a duplicate), and the one channel is subscribed plainly, with no pattern (psubscribe).
      expect(await link.command('SET', ['k', 'v'])).toBe('OK');
      const clients = (await link.command('CLIENT', ['LIST'])) as string;
      expect(clients).toContain('name=link-test:commands');
      expect(clients).toContain('name=link-test:subscriber');
      expect(await link.command('PUBSUB', ['CHANNELS'])).toEqual(['link-test']);
      expect(await link.command('PUBSUB', ['NUMPAT'])).toBe(0);
      let pub = publisher();
      expect(await pub.publish('link-test', 'one')).toBe(1);
      await until(() => received.length === 1, 'the first message');
      pub.close();

      await redis.stop();
      await until(() => !link.isUp, 'the link to notice');
      // While Redis is down a command fails at once, as unavailable: nothing waits in a queue.
      const failed = await link.command('GET', ['k']).catch((e: unknown) => e);
      expect(failed).toBeInstanceOf(SignalError);
      expect((failed as SignalError).code).toBe('backend_unavailable');
      expect((failed as SignalError).status).toBe(503);
      expect(await link.ping()).toBe(false);

      await redis.start();
      await until(() => link.isUp, 'the reconnection');
      expect(reconnects).toBe(1);
      pub = publisher();
      // One subscriber on the channel, and each message delivered once (not twice, as a naive resubscribe does).
      expect(await pub.publish('link-test', 'two')).toBe(1);
      expect(await pub.publish('link-test', 'three')).toBe(1);
      await until(() => received.length >= 3, 'the messages after the restart');
      await Bun.sleep(50);
      expect(received).toEqual(['one', 'two', 'three']);
      expect(await link.command('PUBSUB', ['NUMSUB', 'link-test'])).toEqual(['link-test', 1]);
      expect(await link.ping()).toBe(true);
      pub.close();
    } finally {
      link.close();
      await redis.dispose();
    }
  });

  test('commands sent from tasks of their own in one turn of the loop (as requests are) reach Redis together, in order', async () => {
    const redis = await RedisServer.start();
    const link = new RedisLink({ url: redis.url, channel: 'batch-test', onMessage: () => {}, onReconnect: () => {} });
    const reads = async () => Number(/total_reads_processed:(\d+)/.exec((await link.command('INFO', ['stats'])) as string)?.[1]);
    try {
      await link.start();
      const before = await reads();
      // Each timer of the same turn is a task, with the microtasks run after it: Bun's client alone sends each command in a write of its own.
      const counts = await Promise.all(Array.from({ length: 20 }, () => new Promise((resolve) => setTimeout(() => resolve(link.command('INCR', ['n'])), 0))));
      const after = await reads();
      expect(counts).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      // The twenty in one read (two at most, should the write be split), and the INFO after them in one.
      expect(after - before).toBeLessThanOrEqual(3);
    } finally {
      link.close();
      await redis.dispose();
    }
  });

  test("a holder's commands of a turn go with the turn's, and before any command given after it", async () => {
    const redis = await RedisServer.start();
    const link = new RedisLink({ url: redis.url, channel: 'hold-test', onMessage: () => {}, onReconnect: () => {} });
    try {
      await link.start();
      const held: string[] = [];
      const done = new Map<string, Promise<unknown>>();
      const holder = {
        flush() {
          for (const item of held.splice(0)) done.set(item, link.command('RPUSH', ['order', item]));
        },
      };
      // Held, then another command of the same turn: the held one goes first.
      held.push('held-1');
      link.hold(holder);
      done.set('after-1', link.command('RPUSH', ['order', 'after-1']));
      expect([...done.keys()]).toEqual(['held-1', 'after-1']);
      // Held with nothing after it: it goes when the turn's commands do, with no other command to make it.
      held.push('held-2');
      link.hold(holder);
      expect(done.has('held-2')).toBe(false);
      await until(() => done.has('held-2'), 'the held command to go with the turn');
      await Promise.all(done.values());
      expect(await link.command('LRANGE', ['order', '0', '-1'])).toEqual(['held-1', 'after-1', 'held-2']);
    } finally {
      link.close();
      await redis.dispose();
    }
  });
});

describe('cluster: Redis down and back', () => {
  test('while Redis is down: not ready, registrations and messages 503, open streams stay; then it recovers and nothing acknowledged is lost', async () => {
    const redis = await RedisServer.start({ appendOnly: true });
    const cluster = await startCluster(redis.url, 2, { pingIntervalMs: 1000 });
    const [a, b] = cluster.instances;
    if (!a || !b) throw new Error('two instances');
    try {
      await call(a.url, 'POST', '/register/s/x');
      await call(a.url, 'POST', '/register/s/y');
      await call(b.url, 'POST', '/register/s/z');
      const y = await openEvents(`${b.url}/events/s/y`);
      await y.next(ofType('new-peer', 'z'));
      expect((await call(a.url, 'POST', '/message/s/x', { target: 'y', type: 'before', payload: 1 })).status).toBe(200);
      // z has no stream: held for it.
      expect((await call(a.url, 'POST', '/message/s/x', { target: 'z', type: 'held', payload: 1 })).status).toBe(202);
      await y.next(ofType('before'));

      await redis.stop();
      await until(async () => (await call(a.url, 'GET', '/readyz')).status === 503, 'A to notice');
      const ready = await call(a.url, 'GET', '/readyz');
      expect(ready.body).toEqual({ status: 'not_ready', checks: { redis: 'failing' } });
      const register = await call(b.url, 'POST', '/register/s/w');
      expect(register.status).toBe(503);
      expect(register.body.error).toBe('backend_unavailable');
      expect(register.body.message).toContain('Redis');
      expect(register.headers.get('retry-after')).toBe('2');
      const message = await call(a.url, 'POST', '/message/s/x', { target: 'y', type: 'during' });
      expect(message.status).toBe(503);
      expect(message.body.error).toBe('backend_unavailable');
      // The open stream is still served: its pings go on.
      cluster.clock.advance(1000);
      await y.next(ofType('ping'));

      await redis.start();
      await until(async () => (await call(a.url, 'GET', '/readyz')).status === 200 && (await call(b.url, 'GET', '/readyz')).status === 200, 'both instances ready again');
      expect((await call(a.url, 'POST', '/message/s/x', { target: 'y', type: 'after', payload: 2 })).status).toBe(200);
      await y.next(ofType('after'));
      const z = await openEvents(`${a.url}/events/s/z`);
      expect((await z.next(ofType('held'))).json.payload).toBe(1);
      const yIds = y.events.filter((e) => e.json.type !== 'ping').map((e) => Number(e.id));
      expect(yIds).toEqual([1, 2, 3]);
      expect((await call(b.url, 'POST', '/register/s/w')).status).toBe(200);
      y.close();
      z.close();
    } finally {
      await cluster.stop();
      await redis.dispose();
    }
  });

  test('a Redis that hangs (connections open, no answers) counts as down after REDIS_TIMEOUT_MS, and recovers', async () => {
    const redis = await RedisServer.start();
    const cluster = await startCluster(redis.url, 2, { redisTimeoutMs: 300 });
    const [a, b] = cluster.instances;
    if (!a || !b) throw new Error('two instances');
    try {
      await call(a.url, 'POST', '/register/s/x');
      await call(a.url, 'POST', '/register/s/y');
      const y = await openEvents(`${b.url}/events/s/y`);
      expect((await call(a.url, 'POST', '/message/s/x', { target: 'y', type: 'before' })).status).toBe(200);
      redis.pause();
      // The request waits for Redis no longer than the timeout, then is refused: not acknowledged.
      const refused = await call(a.url, 'POST', '/message/s/x', { target: 'y', type: 'during' });
      expect(refused.status).toBe(503);
      expect(refused.body.error).toBe('backend_unavailable');
      expect((await call(a.url, 'GET', '/readyz')).status).toBe(503);
      redis.resume();
      await until(async () => (await call(a.url, 'GET', '/readyz')).status === 200 && (await call(b.url, 'GET', '/readyz')).status === 200, 'both instances ready again');
      expect((await call(a.url, 'POST', '/message/s/x', { target: 'y', type: 'after' })).status).toBe(200);
      await y.next(ofType('after'));
      // The refused message was sent before Redis froze: Redis may yet have run it (at least once,
      // never lost); the acknowledged ones are there, in order.
      const types = y.events.map((e) => e.json.type);
      expect(types.filter((t) => t !== 'during')).toEqual(['before', 'after']);
      expect(types.filter((t) => t === 'during').length).toBeLessThanOrEqual(1);
      y.close();
    } finally {
      redis.resume();
      await cluster.stop();
      await redis.dispose();
    }
  });

  test('an event whose publication an instance missed is fetched from the log when its subscriber reconnects', async () => {
    const redis = await RedisServer.start();
    const cluster = await startCluster(redis.url, 2);
    const [a, b] = cluster.instances;
    if (!a || !b) throw new Error('two instances');
    const admin = new RedisClient(redis.url, { autoReconnect: false });
    try {
      await call(a.url, 'POST', '/register/s/x');
      await call(a.url, 'POST', '/register/s/y');
      const y = await openEvents(`${b.url}/events/s/y`);
      // An event appended to y's log whose publication never reached B (as when B's subscriber was down).
      const id = (await admin.send('HINCRBY', [redisKey.mailbox(cluster.prefix, peerAddress('s', 'y')), 'last', '1'])) as number;
      await admin.send('XADD', [redisKey.log(cluster.prefix, peerAddress('s', 'y')), `0-${id}`, 'e', JSON.stringify({ type: 'missed', senderId: 'x' }), 't', '-1']);
      // B's subscriber connection drops: B reconnects with a fresh one and reconciles from the logs.
      const clients = (await admin.send('CLIENT', ['LIST'])) as string;
      const ofB = clients.split('\n').find((line) => line.includes(`name=${b.cluster.link.channel}:subscriber`));
      const clientId = /\bid=(\d+)/.exec(ofB ?? '')?.[1];
      expect(clientId).toBeDefined();
      await admin.send('CLIENT', ['KILL', 'ID', clientId as string]);
      const missed = await y.next(ofType('missed'));
      expect(missed.id).toBe(String(id));
      // Live routing works again, through the new subscriber, once per event.
      expect((await call(a.url, 'POST', '/message/s/x', { target: 'y', type: 'next' })).status).toBe(200);
      await y.next(ofType('next'));
      expect(y.events.map((e) => Number(e.id))).toEqual([id, id + 1]);
      y.close();
    } finally {
      admin.close();
      await cluster.stop();
      await redis.dispose();
    }
  });

  test("an instance deletes the function libraries of switchboard's other versions, and nobody else's", async () => {
    const redis = await RedisServer.start();
    const admin = new RedisClient(redis.url, { autoReconnect: false });
    const libraries = () => librariesIn(admin);
    try {
      for (const name of ['switchboard_0123abcd', 'switchboard_tools', 'someone_else'])
        await admin.send('FUNCTION', ['LOAD', `#!lua name=${name}\nredis.register_function('${name}_f', function() return 1 end)`]);
      const cluster = await startCluster(redis.url, 1);
      try {
        expect(await libraries()).toEqual([LIBRARY.name, 'someone_else', 'switchboard_tools'].sort());
      } finally {
        await cluster.stop();
      }
    } finally {
      admin.close();
      await redis.dispose();
    }
  });

  test('a Redis that lost the function library (FUNCTION FLUSH, a failover to a server without it) has it loaded again by the next call, which goes through', async () => {
    const redis = await RedisServer.start();
    const cluster = await startCluster(redis.url, 2);
    const [a, b] = cluster.instances;
    if (!a || !b) throw new Error('two instances');
    const admin = new RedisClient(redis.url, { autoReconnect: false });
    const libraries = () => librariesIn(admin);
    try {
      expect(a.cluster.link.scriptsRunAs).toBe('functions');
      expect(await libraries()).toEqual([LIBRARY.name]);
      await call(a.url, 'POST', '/register/s/x');
      await call(a.url, 'POST', '/register/s/y');
      const y = await openEvents(`${b.url}/events/s/y`);
      await admin.send('FUNCTION', ['FLUSH']);
      expect(await libraries()).toEqual([]);
      expect((await call(a.url, 'POST', '/message/s/x', { target: 'y', type: 'after-flush' })).status).toBe(200);
      await y.next(ofType('after-flush'));
      expect(await libraries()).toEqual([LIBRARY.name]);
      y.close();
    } finally {
      admin.close();
      await cluster.stop();
      await redis.dispose();
    }
  });

  test('after Redis restarts empty (no persistence) the streams end, and peers that register again carry on', async () => {
    const redis = await RedisServer.start();
    const cluster = await startCluster(redis.url, 2);
    const [a, b] = cluster.instances;
    if (!a || !b) throw new Error('two instances');
    try {
      await call(a.url, 'POST', '/register/s/x');
      await call(a.url, 'POST', '/register/s/y');
      const y = await openEvents(`${b.url}/events/s/y`);
      await redis.stop();
      await redis.start();
      // The reconnection finds y gone from Redis: its stream ends, its client gets 404 and registers again.
      await y.ended;
      expect((await call(b.url, 'GET', '/events/s/y')).body.error).toBe('session_not_found');
      expect((await call(b.url, 'POST', '/register/s/y')).status).toBe(200);
      expect((await call(a.url, 'POST', '/register/s/x')).body.peers).toEqual(['y']);
      const again = await openEvents(`${a.url}/events/s/y`);
      expect((await call(b.url, 'POST', '/message/s/x', { target: 'y', type: 'hi' })).status).toBe(200);
      await again.next(ofType('hi'));
      again.close();
    } finally {
      await cluster.stop();
      await redis.dispose();
    }
  });
});
