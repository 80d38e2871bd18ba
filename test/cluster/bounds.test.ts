import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { RedisClient } from 'bun';
import { peerAddress, redisKey } from '../../src/cluster/protocol';
import { SCRIPTS } from '../../src/cluster/scripts';
import type { SignalError } from '../../src/errors';
import { startServer, until } from '../helpers';
import { ofType, openEvents, type SseConnection } from '../sse-client';
import { type Cluster, call, clustersOn, type Instance } from './helpers';
import { RedisServer } from './redis-server';

let redis: RedisServer;
let admin: RedisClient;
beforeAll(async () => {
  redis = await RedisServer.start();
  admin = new RedisClient(redis.url, { autoReconnect: false });
});
afterAll(async () => {
  admin.close();
  await redis.dispose();
});

const withCluster = clustersOn(() => redis.url);

/** The cluster's event bytes as the gauge reads them (switchboard_cluster_event_bytes), asked of Redis now. */
async function eventBytes(cluster: Cluster, via: Instance): Promise<number> {
  const reply = SCRIPTS.counts.decode(await via.cluster.link.eval(SCRIPTS.counts, [cluster.prefix, 'test', String(cluster.clock.now()), '60000']));
  return reply.cluster.eventBytes;
}

/** The bytes of every event that Redis really holds under the cluster's prefix, counted key by key. */
async function bytesInRedis(prefix: string): Promise<number> {
  let total = 0;
  let cursor = '0';
  do {
    const [next, keys] = (await admin.send('SCAN', [cursor, 'MATCH', `${prefix}*`, 'COUNT', '1000', 'TYPE', 'stream'])) as [string, string[]];
    cursor = next;
    for (const key of keys) {
      for (const [, fields] of (await admin.send('XRANGE', [key, '-', '+'])) as [string, string[]][]) total += Buffer.byteLength(fields[1] as string);
    }
  } while (cursor !== '0');
  return total;
}

const open = { registerRatePerMin: 0, messageRatePerS: 0, peerMessageRatePerS: 0 };

describe('cluster: server events count against the bounds', () => {
  test('peers that come and go through several instances leave one notice in a peer that is not reading', async () => {
    await withCluster(2, { ...open, maxQueue: 8 }, async ({ instances: [a, b] }, streams) => {
      if (!a || !b) throw new Error('two instances');
      expect((await call(a.url, 'POST', '/register/s/idle')).status).toBe(200);
      for (let i = 0; i < 30; i++) {
        const via = i % 2 === 0 ? a : b;
        expect((await call(via.url, 'POST', '/register/s/flapper')).status).toBe(200);
        expect((await call(via.url, 'DELETE', '/register/s/flapper')).status).toBe(200);
      }
      expect((await call(b.url, 'POST', '/register/s/flapper')).status).toBe(200);
      // The held events take no room beyond the one notice: a client message still fits under MAX_QUEUE=8.
      expect((await call(a.url, 'POST', '/message/s/flapper', { type: 'hello', target: 'idle' })).status).toBe(202);
      const stream = await openEvents(`${b.url}/events/s/idle`);
      streams.push(stream);
      expect((await stream.next()).json).toEqual({ type: 'new-peer', senderId: 'flapper' });
      expect((await stream.next()).json).toEqual({ type: 'hello', senderId: 'flapper' });
      // The superseded ids were skipped, never written; the stream goes on from there.
      expect((await call(a.url, 'POST', '/message/s/flapper', { type: 'more', target: 'idle' })).status).toBe(200);
      const more = await stream.next(ofType('more'));
      expect(Number(more.id)).toBeGreaterThan(60);
      // A client resuming from a superseded id (one it could have had before a resume) gets what followed it.
      await b.cluster.refresh();
      const superseded = String(Number(stream.events[0]?.id) - 1);
      const resumed = await openEvents(`${a.url}/events/s/idle`, { lastEventId: superseded });
      streams.push(resumed);
      expect(resumed.status).toBe(200);
      const replayed = [await resumed.next(), await resumed.next(), await resumed.next()];
      expect(replayed.map((e) => e.json.type)).toEqual(['new-peer', 'hello', 'more']);
      expect(replayed.map((e) => e.id)).toEqual(stream.events.map((e) => e.id));
    });
  });
});

describe('cluster: byte budgets, enforced in the append script', () => {
  test('a peer holds at most MAX_PEER_EVENT_BYTES whichever instance the messages go through', async () => {
    await withCluster(2, { ...open, maxPeerEventBytes: 131_072 }, async (cluster, streams) => {
      const [a, b] = cluster.instances;
      if (!a || !b) throw new Error('two instances');
      await call(a.url, 'POST', '/register/s/sender');
      await call(b.url, 'POST', '/register/s/target');
      const payload = 'y'.repeat(60_000);
      const statuses: number[] = [];
      for (const via of [a, b, a, b]) statuses.push((await call(via.url, 'POST', '/message/s/sender', { type: 'blob', target: 'target', payload })).status);
      expect(statuses).toEqual([202, 202, 429, 429]);
      const refused = await call(a.url, 'POST', '/message/s/sender', { type: 'blob', target: 'target', payload });
      expect(refused.body).toEqual({ error: 'queue_full', message: expect.stringContaining('bytes of undelivered events') });
      // A broadcast reaches every other peer or none.
      expect((await call(b.url, 'POST', '/message/s/sender', { type: 'blob', payload })).status).toBe(429);
      const stream = await openEvents(`${a.url}/events/s/target`);
      streams.push(stream);
      await stream.next(ofType('blob'));
      await stream.next(ofType('blob'));
      // Once read, room again (the cursor reaches Redis with the next refresh of the stream).
      await a.cluster.refresh();
      expect((await call(b.url, 'POST', '/message/s/sender', { type: 'blob', target: 'target', payload })).status).toBe(200);
      await stream.next((e) => e.json.type === 'blob' && e.id !== stream.events[0]?.id && e.id !== stream.events[1]?.id);
      await a.cluster.refresh();
      expect(await eventBytes(cluster, a)).toBeLessThanOrEqual(131_072 + 1024);
      expect(await eventBytes(cluster, a)).toBe(await bytesInRedis(cluster.prefix));
    });
  });

  test('past MAX_PEER_EVENT_BYTES the kept events dropped leave Redis, and the count matches what it holds', async () => {
    // Which events go is the session rule, on both stores: test/contract/limits.test.ts, same scenario.
    await withCluster(2, { ...open, maxPeerEventBytes: 131_072 }, async (cluster, streams) => {
      const [a, b] = cluster.instances;
      if (!a || !b) throw new Error('two instances');
      await call(a.url, 'POST', '/register/s/sender');
      await call(a.url, 'POST', '/register/s/target');
      const stream = await openEvents(`${b.url}/events/s/target`);
      streams.push(stream);
      for (let i = 0; i < 100; i++)
        expect((await call(a.url, 'POST', '/message/s/sender', { type: 'small', target: 'target', payload: `${i}:${'s'.repeat(1_000)}` })).status).toBe(200);
      await stream.next((e) => e.json.type === 'small' && String(e.json.payload).startsWith('99:'));
      expect((await call(a.url, 'POST', '/message/s/sender', { type: 'big', target: 'target', payload: 'b'.repeat(60_000) })).status).toBe(200);
      await stream.next(ofType('big'));
      const address = peerAddress('s', 'target');
      const first = Number(await admin.send('HGET', [redisKey.mailbox(cluster.prefix, address), 'first']));
      expect(first).toBeGreaterThan(Number(stream.events[16]?.id));
      // The log holds exactly the events from the first kept on, as the stream received them.
      const log = (await admin.send('XRANGE', [redisKey.log(cluster.prefix, address), '-', '+'])) as [string, string[]][];
      const kept = stream.events.filter((e) => Number(e.id) >= first);
      expect(log.map(([id, fields]) => [Number(id.slice(2)), fields[1]])).toEqual(kept.map((e) => [Number(e.id), e.data]));
      expect(await eventBytes(cluster, a)).toBe(await bytesInRedis(cluster.prefix));
    });
  });

  test('one address with many peers cannot make Redis hold more than MAX_EVENT_BYTES; the count matches what Redis holds', async () => {
    const budget = 1_048_576;
    await withCluster(2, { ...open, maxEventBytes: budget, maxPeerEventBytes: 131_072 }, async (cluster) => {
      const [a, b] = cluster.instances;
      if (!a || !b) throw new Error('two instances');
      for (let s = 0; s < 4; s++) {
        await call(a.url, 'POST', `/register/s${s}/sender`);
        for (let p = 0; p < 10; p++) expect((await call(s % 2 ? a.url : b.url, 'POST', `/register/s${s}/p${p}`)).status).toBe(200);
      }
      const payload = 'x'.repeat(60_000);
      const answers: Record<number, number> = {};
      const refusals = new Set<string>();
      for (let round = 0; round < 3; round++) {
        for (let s = 0; s < 4; s++) {
          for (let p = 0; p < 10; p++) {
            const res = await call((p % 2 ? a : b).url, 'POST', `/message/s${s}/sender`, { type: 'blob', target: `p${p}`, payload });
            answers[res.status] = (answers[res.status] ?? 0) + 1;
            if (res.status === 429) refusals.add(res.body.error);
          }
        }
        expect(await eventBytes(cluster, a)).toBeLessThanOrEqual(budget);
      }
      expect(answers[202]).toBeGreaterThanOrEqual(16);
      expect(answers[429]).toBeGreaterThan(80);
      expect([...refusals]).toEqual(['queue_full']);
      const counted = await eventBytes(cluster, b);
      expect(counted).toBe(await bytesInRedis(cluster.prefix));
      expect(counted).toBeGreaterThan(budget - 2 * 61_000);
      // Leaving gives the bytes back.
      for (let s = 0; s < 4; s++) for (let p = 0; p < 10; p++) await call(a.url, 'DELETE', `/register/s${s}/p${p}`);
      expect(await eventBytes(cluster, a)).toBe(await bytesInRedis(cluster.prefix));
      expect(await eventBytes(cluster, a)).toBeLessThan(10_000);
    });
  });
});

describe('cluster: the messages of a turn, in one call of the send script', () => {
  /** Counts the calls of the send script that `instance` makes, and the messages in each. */
  function countSends(instance: Instance): number[] {
    const link = instance.cluster.link;
    const original = link.eval.bind(link);
    const calls: number[] = [];
    link.eval = (script, args) => {
      if (script === SCRIPTS.send) calls.push(args.filter((arg) => arg.startsWith('{')).length);
      return original(script, args);
    };
    return calls;
  }

  test('forty senders of one turn go in two calls, and each hears what it would have heard alone', async () => {
    await withCluster(2, open, async (cluster, streams) => {
      const [a, b] = cluster.instances;
      if (!a || !b) throw new Error('two instances');
      for (let s = 0; s < 40; s++) {
        await call(a.url, 'POST', `/register/s${s}/sender`);
        await call(a.url, 'POST', `/register/s${s}/target`);
      }
      // Half the targets read, on the other instance; the others have no stream and hold their message.
      const reading = new Map<number, SseConnection>();
      for (let s = 0; s < 40; s += 2) {
        const stream = await openEvents(`${b.url}/events/s${s}/target`);
        streams.push(stream);
        reading.set(s, stream);
      }
      const calls = countSends(a);
      const send = (session: string, sender: string, target: string) =>
        Promise.resolve(a.cluster.send(session, sender, { type: 'note', target, payload: { session } })).catch((e: SignalError) => e.code);
      // All from one task: one turn of the loop.
      const outcomes = await Promise.all([
        ...Array.from({ length: 40 }, (_, s) => send(`s${s}`, 'sender', 'target')),
        send('s0', 'sender', 'nobody'),
        send('s1', 'stranger', 'target'),
        send('nowhere', 'sender', 'target'),
      ]);
      expect(calls).toEqual([32, 11]);
      expect(outcomes).toEqual([...Array.from({ length: 40 }, (_, s) => (s % 2 ? 'queued' : 'sent')), 'target_not_found', 'peer_not_found', 'session_not_found']);
      for (const [s, stream] of reading) expect((await stream.next(ofType('note'))).json.payload).toEqual({ session: `s${s}` });
      const held = await openEvents(`${b.url}/events/s39/target`);
      streams.push(held);
      expect((await held.next(ofType('note'))).json).toMatchObject({ senderId: 'sender', payload: { session: 's39' } });
    });
  });

  test("the cluster's byte budget holds across the appends of one call, and the count matches what Redis holds", async () => {
    const budget = 1_048_576;
    await withCluster(2, { ...open, maxEventBytes: budget, maxPeerEventBytes: 131_072 }, async (cluster) => {
      const [a, b] = cluster.instances;
      if (!a || !b) throw new Error('two instances');
      for (let s = 0; s < 24; s++) {
        await call(a.url, 'POST', `/register/s${s}/sender`);
        await call(b.url, 'POST', `/register/s${s}/target`);
      }
      const calls = countSends(a);
      const payload = 'x'.repeat(60_000);
      const outcomes = await Promise.all(
        Array.from({ length: 24 }, (_, s) => Promise.resolve(a.cluster.send(`s${s}`, 'sender', { type: 'blob', target: 'target', payload })).catch((e: SignalError) => e.code)),
      );
      expect(calls).toEqual([24]);
      // Taken in order until the budget is spent, as if each had been sent alone: none held, then refused.
      const taken = outcomes.filter((o) => o === 'queued').length;
      expect(taken).toBeGreaterThanOrEqual(15);
      expect(outcomes).toEqual([...Array(taken).fill('queued'), ...Array(24 - taken).fill('queue_full')]);
      const counted = await eventBytes(cluster, b);
      expect(counted).toBeLessThanOrEqual(budget);
      expect(counted).toBe(await bytesInRedis(cluster.prefix));
      for (let s = 0; s < 24; s++) await call(b.url, 'DELETE', `/register/s${s}/target`);
      expect(await eventBytes(cluster, a)).toBe(await bytesInRedis(cluster.prefix));
    });
  });
});

describe("cluster: a reading stream's cursor", () => {
  test('a peer that reads is not refused however fast it is sent to, and its instance stores how far it read without a refresh', async () => {
    await withCluster(2, { ...open, maxQueue: 16 }, async (cluster, streams) => {
      const [a, b] = cluster.instances;
      if (!a || !b) throw new Error('two instances');
      await call(a.url, 'POST', '/register/s/sender');
      await call(b.url, 'POST', '/register/s/reader');
      const stream = await openEvents(`${b.url}/events/s/reader`);
      streams.push(stream);
      // Ten times MAX_QUEUE, one after another: Redis counts what the reader's instance has written and
      // not yet said so as held, which must never reach the bound.
      const statuses: number[] = [];
      for (let i = 0; i < 160; i++) statuses.push((await call(a.url, 'POST', '/message/s/sender', { type: 'note', target: 'reader', payload: i })).status);
      expect(statuses.filter((status) => status !== 200)).toEqual([]);
      await stream.next((e) => e.json.type === 'note' && e.json.payload === 159);
      const mailbox = redisKey.mailbox(cluster.prefix, peerAddress('s', 'reader'));
      const held = async () => Number(await admin.send('HGET', [mailbox, 'held']));
      await until(async () => (await held()) === 0, 'the reader holds nothing undelivered in Redis');
      expect(Number(await admin.send('HGET', [mailbox, 'cursor']))).toBe(Number(await admin.send('HGET', [mailbox, 'last'])));
    });
  });
});

describe("cluster: a mailbox's tags", () => {
  test('a peer that has read from two hundred senders keeps no tag of theirs past a refresh', async () => {
    await withCluster(2, { ...open, maxPeersPerSession: 256, maxPeersPerIp: 0 }, async (cluster, streams) => {
      const [a, b] = cluster.instances;
      if (!a || !b) throw new Error('two instances');
      await call(a.url, 'POST', '/register/s/reader');
      const stream = await openEvents(`${b.url}/events/s/reader`);
      streams.push(stream);
      for (let i = 0; i < 200; i++) {
        expect((await call(a.url, 'POST', `/register/s/p${i}`)).status).toBe(200);
        expect((await call(a.url, 'POST', `/message/s/p${i}`, { type: 'hello', target: 'reader' })).status).toBe(200);
      }
      await stream.next((e) => e.json.type === 'hello' && e.json.senderId === 'p199');
      const mailbox = redisKey.mailbox(cluster.prefix, peerAddress('s', 'reader'));
      // Each sender's messages have a tag of their own, and so have the server's notices of it, whose
      // newest ids the mailbox keeps while they are held: between two refreshes, at most two fields per
      // peer of the session besides the counters.
      expect(Number(await admin.send('HLEN', [mailbox]))).toBeLessThanOrEqual(2 * 200 + 16);
      await b.cluster.refresh();
      expect(Number(await admin.send('HLEN', [mailbox]))).toBeLessThan(16);
    });
  });
});

describe('cluster: sessions and registrations per address hold cluster-wide', () => {
  test('the caps count registrations made through any instance, and leaving or timing out through another gives them back', async () => {
    await withCluster(2, { ...open, maxSessionsPerIp: 2, maxPeersPerIp: 3, peerTimeoutMs: 10_000 }, async (cluster) => {
      const [a, b] = cluster.instances;
      if (!a || !b) throw new Error('two instances');
      expect((await call(a.url, 'POST', '/register/x/1')).status).toBe(200);
      expect((await call(b.url, 'POST', '/register/y/1')).status).toBe(200);
      const third = await call(a.url, 'POST', '/register/z/1');
      expect(third.status).toBe(429);
      expect(third.body.error).toBe('too_many_sessions');
      expect((await call(b.url, 'POST', '/register/x/2')).status).toBe(200);
      expect((await call(a.url, 'POST', '/register/x/3')).body.error).toBe('too_many_peers');
      // Its own id again counts once.
      expect((await call(a.url, 'POST', '/register/x/2')).status).toBe(200);
      expect((await call(b.url, 'DELETE', '/register/x/2')).status).toBe(200);
      expect((await call(a.url, 'POST', '/register/x/3')).status).toBe(200);
      // Timing out, claimed by whichever instance sweeps, gives back registrations and the sessions they emptied.
      cluster.clock.advance(60_000);
      await until(async () => {
        await Promise.all([a.cluster.sweep(), b.cluster.sweep()]);
        return (await a.cluster.snapshots()).length === 0;
      }, 'the peers timed out');
      expect((await call(b.url, 'POST', '/register/z/1')).status).toBe(200);
      expect((await call(a.url, 'POST', '/register/w/1')).status).toBe(200);
      expect((await call(b.url, 'POST', '/register/v/1')).body.error).toBe('too_many_sessions');
      expect((await call(a.url, 'POST', '/register/w/2')).status).toBe(200);
      expect((await call(b.url, 'POST', '/register/w/3')).body.error).toBe('too_many_peers');
    });
  });
});

describe('cluster: coalescing gives what one process gives', () => {
  /** Peers come and go around a peer that does not read, through `urls` in turn; what it then reads. */
  async function scenario(urls: string[]): Promise<string[]> {
    let turn = 0;
    const via = () => urls[turn++ % urls.length] as string;
    await call(via(), 'POST', '/register/s/idle');
    for (let i = 0; i < 5; i++) {
      await call(via(), 'POST', '/register/s/flapper');
      await call(via(), 'DELETE', '/register/s/flapper');
    }
    await call(via(), 'POST', '/register/s/flapper');
    expect((await call(via(), 'POST', '/message/s/flapper', { type: 'hello', target: 'idle' })).status).toBe(202);
    await call(via(), 'DELETE', '/register/s/flapper');
    await call(via(), 'POST', '/register/s/flapper');
    await call(via(), 'POST', '/register/s/other');
    await call(via(), 'DELETE', '/register/s/other');
    const stream = await openEvents(`${via()}/events/s/idle`);
    try {
      await stream.next(ofType('peer-left', 'other'));
      const ids = stream.events.map((e) => Number(e.id));
      expect(ids).toEqual([...ids].sort((x, y) => x - y));
      return stream.events.map((e) => `${e.json.type}:${e.json.senderId}`);
    } finally {
      stream.close();
    }
  }

  test('the same events, in the same order, from a cluster of two and from one process', async () => {
    const expected = ['new-peer:flapper', 'hello:flapper', 'new-peer:flapper', 'peer-left:other'];
    const single = startServer(open);
    try {
      expect(await scenario([single.url])).toEqual(expected);
    } finally {
      await single.stop();
    }
    await withCluster(2, open, async ({ instances }) => {
      expect(await scenario(instances.map((i) => i.url))).toEqual(expected);
    });
  });
});
