import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { notificationReceiver } from '../fixtures/notification-receiver';
import { until } from '../helpers';
import { ofType, openEvents } from '../sse-client';
import { bearer, call, clustersOn } from './helpers';
import { RedisServer } from './redis-server';

let redis: RedisServer;
beforeAll(async () => {
  redis = await RedisServer.start();
});
afterAll(async () => {
  await redis.dispose();
});

const notify = (url: string) => ({ notifyUrl: url, notifySecret: 'notify-secret-0123456789' });
const PEER_TIMEOUT_MS = 15_000;

const withCluster = clustersOn(() => redis.url);

describe('cluster: timeouts', () => {
  test('a peer without a stream times out once: one peer-left, one notification, whichever instances sweep', async () => {
    const hooks = notificationReceiver();
    try {
      await withCluster(3, { peerTimeoutMs: PEER_TIMEOUT_MS, ...notify(hooks.url) }, async ({ instances: [a, b, c], clock }) => {
        if (!a || !b || !c) throw new Error('three instances');
        await call(a.url, 'POST', '/register/s/x');
        await call(b.url, 'POST', '/register/s/y');
        await call(c.url, 'POST', '/register/s/z');
        const y = await openEvents(`${c.url}/events/s/y`);
        const z = await openEvents(`${b.url}/events/s/z`);
        await y.next(ofType('new-peer', 'z'));
        clock.advance(PEER_TIMEOUT_MS - 1);
        await Promise.all([a, b, c].map((i) => i.cluster.sweep()));
        // Not yet: a message still reaches x's mailbox.
        expect((await call(a.url, 'POST', '/message/s/y', { target: 'x', type: 'hello' })).status).toBe(202);
        clock.advance(1_000);
        await y.next(ofType('peer-left', 'x'));
        await z.next(ofType('peer-left', 'x'));
        expect((await call(b.url, 'POST', '/message/s/y', { target: 'x', type: 'hello' })).body.error).toBe('target_not_found');
        // Once: more sweeps on every instance, then a marker, and nothing between.
        clock.advance(PEER_TIMEOUT_MS);
        await Promise.all([a, b, c].map((i) => i.cluster.sweep()));
        expect((await call(a.url, 'POST', '/message/s/z', { target: 'y', type: 'marker' })).status).toBe(200);
        await y.next(ofType('marker'));
        expect(y.events.filter((e) => e.json.type === 'peer-left')).toHaveLength(1);
        // y and z kept their streams open: they stay, whatever time passed.
        expect((await call(a.url, 'POST', '/message/s/y', { target: 'z', type: 'still-here' })).status).toBe(200);
        await until(() => hooks.notifications().some((n) => n.type === 'peer-left'), 'the notification');
        z.close();
        y.close();
      });
      const left = hooks.notifications().filter((n) => n.type === 'peer-left');
      expect(left).toHaveLength(1);
      expect(left[0]).toMatchObject({ sessionId: 's', peerId: 'x', reason: 'timeout' });
      expect(hooks.notifications().filter((n) => n.type === 'peer-joined')).toHaveLength(3);
      expect(hooks.notifications().filter((n) => n.type === 'session-created')).toHaveLength(1);
    } finally {
      await hooks.stop();
    }
  });

  test('peer-left comes after the timeout even when the instance holding the stream died', async () => {
    const hooks = notificationReceiver();
    try {
      await withCluster(3, { peerTimeoutMs: PEER_TIMEOUT_MS, ...notify(hooks.url) }, async ({ instances: [a, b, c], clock }) => {
        if (!a || !b || !c) throw new Error('three instances');
        await call(b.url, 'POST', '/register/s/x');
        await call(b.url, 'POST', '/register/s/y');
        const x = await openEvents(`${a.url}/events/s/x`);
        const y = await openEvents(`${c.url}/events/s/y`);
        await x.next(ofType('new-peer', 'y'));
        // A dies with x's stream: nothing is cleaned up, its keepalives stop.
        await a.crash();
        await x.ended;
        // Within the timeout x could still resume elsewhere: nothing happens yet.
        clock.advance(PEER_TIMEOUT_MS);
        await c.cluster.sweep();
        expect(y.events.some((e) => e.json.type === 'peer-left')).toBe(false);
        // Past it, plus the slack a holder has to refresh: B or C claims it, once.
        clock.advance(b.cluster.timing.slackMs + b.cluster.timing.sweepMs);
        await y.next(ofType('peer-left', 'x'));
        await until(() => hooks.notifications().some((n) => n.type === 'peer-left'), 'the notification');
        clock.advance(PEER_TIMEOUT_MS);
        await Promise.all([b.cluster.sweep(), c.cluster.sweep()]);
        expect(y.events.filter((e) => e.json.type === 'peer-left')).toHaveLength(1);
        y.close();
      });
      expect(hooks.notifications().filter((n) => n.type === 'peer-left')).toEqual([expect.objectContaining({ peerId: 'x', reason: 'timeout' })]);
    } finally {
      await hooks.stop();
    }
  });
});

describe('cluster: races between instances', () => {
  test('two instances registering the same id at once: one registration, then one takeover', async () => {
    const hooks = notificationReceiver();
    try {
      await withCluster(2, notify(hooks.url), async ({ instances: [a, b] }) => {
        if (!a || !b) throw new Error('two instances');
        for (let round = 0; round < 10; round++) {
          const session = `race-${round}`;
          const [one, two] = await Promise.all([call(a.url, 'POST', `/register/${session}/p`), call(b.url, 'POST', `/register/${session}/p`)]);
          expect([one.status, two.status]).toEqual([200, 200]);
          // The first got the first incarnation (ids from 0), the takeover the next one.
          const [first, second] = [one, two].sort((p, q) => p.body.lastEventId - q.body.lastEventId);
          expect([first?.body.lastEventId, second?.body.lastEventId]).toEqual([0, 1]);
          // The earlier token lost: its leave is refused; the later one's works.
          expect((await call(b.url, 'DELETE', `/register/${session}/p`, undefined, bearer(first?.body.token))).body.error).toBe('superseded');
          expect((await call(a.url, 'DELETE', `/register/${session}/p`, undefined, bearer(second?.body.token))).status).toBe(200);
        }
        await until(() => hooks.notifications().filter((n) => n.type === 'session-closed').length === 10, 'the notifications');
      });
      const joined = hooks.notifications().filter((n) => n.type === 'peer-joined');
      expect(joined).toHaveLength(20);
      for (let round = 0; round < 10; round++) {
        const ofRound = joined.filter((n) => n.sessionId === `race-${round}`).map((n) => n.takeover);
        expect(ofRound.sort()).toEqual([false, true]);
      }
      expect(hooks.notifications().filter((n) => n.type === 'session-created')).toHaveLength(10);
    } finally {
      await hooks.stop();
    }
  });

  test('in token mode the same race admits exactly one of them', async () => {
    await withCluster(2, { authMode: 'token' }, async ({ instances: [a, b] }) => {
      if (!a || !b) throw new Error('two instances');
      for (let round = 0; round < 10; round++) {
        const answers = await Promise.all([call(a.url, 'POST', `/register/r${round}/p`), call(b.url, 'POST', `/register/r${round}/p`)]);
        expect(answers.map((r) => r.status).sort()).toEqual([200, 401]);
        const winner = answers.find((r) => r.status === 200);
        expect(winner?.body.role).toBe('publisher');
        expect((await call(b.url, 'POST', `/message/r${round}/p`, { type: 'x' }, bearer(winner?.body.token))).status).toBe(200);
      }
    });
  });

  test('peers joining one session at once through three instances never exceed its size', async () => {
    await withCluster(3, { maxPeersPerSession: 3 }, async ({ instances }) => {
      const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => call((instances[i % 3] as { url: string }).url, 'POST', `/register/full/p${i}`)));
      expect(answers.filter((r) => r.status === 200)).toHaveLength(3);
      expect(answers.filter((r) => r.status === 409).every((r) => r.body.error === 'session_full')).toBe(true);
      const admitted = answers.filter((r) => r.status === 200).map((r) => r.body.peerId as string);
      for (const peer of admitted) expect((await call((instances[0] as { url: string }).url, 'POST', `/message/full/${peer}`, { type: 'x' })).status).toBeLessThan(300);
    });
  });

  test('forty peers joining one session at once through three instances all get in, the first as its publisher', async () => {
    await withCluster(3, { authMode: 'token' }, async ({ instances }) => {
      const url = (i: number) => (instances[i % 3] as { url: string }).url;
      const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => call(url(i), 'POST', `/register/crowd/p${i}`)));
      expect(answers.map((r) => r.status)).toEqual(Array(40).fill(200));
      expect(answers.filter((r) => r.body.role === 'publisher')).toHaveLength(1);
      // Each saw the ones already in: the lists grow one by one, as registrations ran one at a time.
      expect(answers.map((r) => r.body.peers.length).sort((a, b) => a - b)).toEqual([...Array(40).keys()]);
    });
  });

  test("a peer's held events are capped across instances: past MAX_QUEUE the sender gets 429", async () => {
    await withCluster(3, { maxQueue: 3 }, async ({ instances: [a, b, c] }) => {
      if (!a || !b || !c) throw new Error('three instances');
      await call(a.url, 'POST', '/register/s/x');
      await call(a.url, 'POST', '/register/s/y');
      for (const via of [a, b, c]) expect((await call(via.url, 'POST', '/message/s/x', { target: 'y', type: 'm' })).status).toBe(202);
      const full = await call(b.url, 'POST', '/message/s/x', { target: 'y', type: 'm' });
      expect(full.status).toBe(429);
      expect(full.body.error).toBe('queue_full');
      expect(full.headers.get('retry-after')).toBe('1');
      // A broadcast reaches every other peer or none.
      expect((await call(c.url, 'POST', '/message/s/x', { type: 'm' })).body.error).toBe('queue_full');
      const y = await openEvents(`${c.url}/events/s/y`);
      for (let i = 0; i < 3; i++) await y.next(ofType('m'));
      expect((await call(a.url, 'POST', '/message/s/x', { target: 'y', type: 'm' })).status).toBe(200);
      y.close();
    });
  });
});
