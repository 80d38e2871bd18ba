// Relay sessions in a cluster, in-process instances on real listeners sharing a real redis-server: where a
// session's media is placed, how the server's offers reach peers whose streams are on other instances, and
// how the media moves when its instance dies, pauses or drains. Time is a manual clock (leases are scored
// with it); a paused process is an instance with a clock of its own that does not move.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { ManualClock, until } from '../helpers';
import { ofType, openEvents } from '../sse-client';
import { type Cluster, call, clustersOn, type Instance } from './helpers';
import { RedisServer } from './redis-server';

let redis: RedisServer;
beforeAll(async () => {
  redis = await RedisServer.start({ appendOnly: true });
});
afterAll(async () => {
  await redis.dispose();
});

const LEASE_MS = 1000;

const clusterOnRedis = clustersOn(() => redis.url);
const withCluster: typeof clusterOnRedis = (count, config, body, each) => clusterOnRedis(count, { relayLeaseMs: LEASE_MS, ...config }, body, each);

/** The instance that carries `sessionId`'s media, once one does. */
async function ownerOf(instances: Instance[], sessionId: string): Promise<Instance> {
  let owner: Instance | undefined;
  await until(
    () => {
      const owners = instances.filter((i) => i.cluster.relay?.sessions.has(sessionId));
      owner = owners.length === 1 ? owners[0] : undefined;
      return owner !== undefined;
    },
    `one owner of ${sessionId}`,
    10_000,
    () => `owners: ${instances.filter((i) => i.cluster.relay?.sessions.has(sessionId)).map((i) => i.name)}`,
  );
  if (!owner) throw new Error('no owner');
  return owner;
}

/** A relay session created through the first instance with its publisher `dev`, and where it was placed. */
async function relaySession(instances: Instance[]): Promise<{ owner: Instance; others: [Instance, Instance] }> {
  expect((await call(instances[0]?.url ?? '', 'POST', '/register/cam/dev?mode=relay')).status).toBe(200);
  const owner = await ownerOf(instances, 'cam');
  return { owner, others: instances.filter((i) => i !== owner) as [Instance, Instance] };
}

const metricsOf = async (i: Instance): Promise<string> => await (await fetch(`${i.url}/metrics`)).text();

/** Moves the shared clock on by `ms` in steps of a renewal, letting each step's Redis work finish. */
async function advance(cluster: Cluster, ms: number, live: Instance[] = cluster.instances): Promise<void> {
  for (let done = 0; done < ms; done += LEASE_MS / 4) {
    cluster.clock.advance(LEASE_MS / 4);
    await Promise.all(live.map((i) => i.cluster.relay?.renew()));
    await Promise.all(live.map((i) => i.cluster.relay?.sweep()));
  }
}

const fromServer = (type: string) => ofType(type, 'switchboard');

describe('placement', () => {
  test('a new relay session goes to the instance with the most room, not the one that took the request', async () => {
    await withCluster(
      3,
      {},
      async ({ instances }) => {
        const [a, b, c] = instances as [Instance, Instance, Instance];
        const first = await call(a.url, 'POST', '/register/cam/dev?mode=relay');
        expect(first.body).toMatchObject({ mode: 'relay', role: 'publisher' });
        expect(await ownerOf(instances, 'cam')).toBe(b);
        // b has 9 places left, c 5: b again; then, the registrations counted, c once b has less room.
        await call(c.url, 'POST', '/register/two/dev?mode=relay');
        expect(await ownerOf(instances, 'two')).toBe(b);
        for (let i = 0; i < 4; i++) expect((await call(a.url, 'POST', `/register/two/v${i}`)).status).toBe(200);
        await call(a.url, 'POST', '/register/three/dev?mode=relay');
        expect(await ownerOf(instances, 'three')).toBe(c);
        const metrics = await metricsOf(b);
        expect(metrics).toContain('switchboard_relay_owned_sessions 2');
        expect(metrics).toContain('switchboard_relay_placements_total{why="placed"} 2');
        expect(metrics).toContain('switchboard_relay_capacity 10');
      },
      [{ config: { relayCapacity: 2 } }, { config: { relayCapacity: 10 } }, { config: { relayCapacity: 5 } }],
    );
  });

  test('sessions created ahead, without peers yet, spread over instances with as much room', async () => {
    await withCluster(3, { adminToken: 'admin-token-0123456789' }, async ({ instances }) => {
      const admin = { authorization: 'Bearer admin-token-0123456789' };
      for (const sessionId of ['one', 'two', 'three']) {
        expect((await call(instances[0]?.url ?? '', 'POST', '/sessions', { sessionId, mode: 'relay' }, admin)).status).toBe(201);
      }
      const owners = await Promise.all(['one', 'two', 'three'].map((id) => ownerOf(instances, id)));
      expect(new Set(owners).size).toBe(3);
    });
  });

  test('no room anywhere: 503 relay_full with Retry-After; a full owner refuses another peer the same way', async () => {
    await withCluster(2, { relayCapacity: 1 }, async ({ instances: [a, b] }) => {
      if (!a || !b) throw new Error('two instances');
      expect((await call(a.url, 'POST', '/register/one/dev?mode=relay')).status).toBe(200);
      expect((await call(a.url, 'POST', '/register/two/dev?mode=relay')).status).toBe(200);
      const full = await call(b.url, 'POST', '/register/three/dev?mode=relay');
      expect(full.status).toBe(503);
      expect(full.headers.get('retry-after')).toBe('30');
      expect(full.body).toEqual({ error: 'relay_full', message: expect.stringContaining('RELAY_CAPACITY') });
      const joining = await call(b.url, 'POST', '/register/one/viewer');
      expect(joining.status).toBe(503);
      expect(joining.body.message).toContain('relay session one');
      // Nothing of the refused registrations stayed.
      expect((await call(a.url, 'POST', '/register/three/dev')).body.mode).toBe('mesh');
    });
  });
});

describe('signalling from anywhere', () => {
  test("the owner's offers reach peers whose streams are elsewhere; their answers and bad input go through any instance", async () => {
    await withCluster(3, {}, async ({ instances }, streams) => {
      const [a, b, c] = instances as [Instance, Instance, Instance];
      expect((await call(a.url, 'POST', '/register/live/dev?mode=relay')).body.peers).toEqual([]);
      const owner = await ownerOf(instances, 'live');
      const others = instances.filter((i) => i !== owner);
      const other = others[0] as Instance;
      const dev = await openEvents(`${other.url}/events/live/dev`);
      streams.push(dev);
      const offer = await dev.next(fromServer('offer'));
      expect((offer.json.payload as { sdp: string }).sdp).toStartWith('v=0');
      const viewer = await call(c.url, 'POST', '/register/live/v1');
      expect(viewer.body).toMatchObject({ role: 'viewer', peers: ['dev'] });
      const v1 = await openEvents(`${(others[1] as Instance).url}/events/live/v1`);
      streams.push(v1);
      await v1.next(fromServer('offer'));
      // Peers of a relay session send media signals to switchboard only; a bad one is refused at once.
      const toPeer = await call(b.url, 'POST', '/message/live/v1', { target: 'dev', type: 'offer', payload: { sdp: 'v=0' } });
      expect(toPeer.status).toBe(400);
      expect(toPeer.body.message).toContain('switchboard');
      const bad = await call(a.url, 'POST', '/message/live/v1', { target: 'switchboard', type: 'answer', payload: { sdp: 'nope' } });
      expect(bad).toMatchObject({ status: 400, body: { error: 'invalid_request' } });
      const candidate = await call(b.url, 'POST', '/message/live/v1', { target: 'switchboard', type: 'ice-candidate', payload: null });
      expect(candidate.status).toBe(200);
      // The viewer is unseen; the publisher's leaving is told to the viewer.
      expect((await call(a.url, 'DELETE', '/register/live/dev')).status).toBe(200);
      await v1.next(ofType('peer-left', 'dev'));
    });
  });
});

describe('failover', () => {
  test('the owner dies: its lease expires, exactly one other instance takes over with a fresh offer to every peer', async () => {
    await withCluster(3, {}, async (cluster, streams) => {
      const { instances } = cluster;
      const { owner, others } = await relaySession(instances);
      await call(others[0].url, 'POST', '/register/cam/v1');
      const dev = await openEvents(`${others[0].url}/events/cam/dev`);
      const v1 = await openEvents(`${others[1].url}/events/cam/v1`);
      streams.push(dev, v1);
      const first = await v1.next(fromServer('offer'));
      await dev.next(fromServer('offer'));

      await owner.crash();
      await advance(cluster, 2 * LEASE_MS, others);
      const next = await ownerOf(others, 'cam');
      const again = await v1.next(fromServer('offer'));
      expect(Number(again.id)).toBeGreaterThan(Number(first.id));
      await dev.next(fromServer('offer'));
      // Two instances swept; one took it, once.
      const metrics = await Promise.all(others.map(metricsOf));
      expect(metrics.filter((m) => m.includes('switchboard_relay_failovers_total 1')).length).toBe(1);
      expect(instances.filter((i) => i.cluster.relay?.sessions.has('cam'))).toEqual([next]);
      // Signalling goes on: a new viewer is offered by the new owner.
      await call(others[1].url, 'POST', '/register/cam/v2');
      const v2 = await openEvents(`${others[0].url}/events/cam/v2`);
      streams.push(v2);
      await v2.next(fromServer('offer'));
    });
  });

  test('two instances racing to take one expired lease: exactly one owns it', async () => {
    await withCluster(3, {}, async (cluster) => {
      const { instances } = cluster;
      for (let i = 0; i < 6; i++) expect((await call(instances[i % 3]?.url ?? '', 'POST', `/register/s${i}/dev?mode=relay`)).status).toBe(200);
      const owners = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => ownerOf(instances, `s${i}`)));
      const dead = owners[0] as Instance;
      const live = instances.filter((i) => i !== dead);
      await dead.crash();
      const lost = [0, 1, 2, 3, 4, 5].filter((i) => owners[i] === dead).map((i) => `s${i}`);
      expect(lost.length).toBeGreaterThan(0);
      // Past the lease: at every step both sweep at once.
      await advance(cluster, 2 * LEASE_MS, live);
      for (const sessionId of lost) {
        const owner = await ownerOf(live, sessionId);
        expect(live.filter((i) => i.cluster.relay?.sessions.has(sessionId))).toEqual([owner]);
      }
    });
  });

  test('a paused owner that comes back finds its token old: it stops forwarding and says so', async () => {
    const paused = new ManualClock();
    await withCluster(
      3,
      { relayCapacity: 5 },
      async (cluster, streams) => {
        const { instances } = cluster;
        const [a, b, c] = instances as [Instance, Instance, Instance];
        // a has the most room (it registers first, with a capacity of its own).
        await call(b.url, 'POST', '/register/cam/dev?mode=relay');
        expect(await ownerOf(instances, 'cam')).toBe(a);
        const dev = await openEvents(`${b.url}/events/cam/dev`);
        streams.push(dev);
        const first = await dev.next(fromServer('offer'));
        // a's clock stands still (its timers do not run): its lease runs out on the others' clock.
        await advance(cluster, 2 * LEASE_MS, [b, c]);
        const next = await ownerOf([b, c], 'cam');
        const fresh = await dev.next(fromServer('offer'));
        expect(Number(fresh.id)).toBeGreaterThan(Number(first.id));
        expect(a.cluster.relay?.sessions.has('cam')).toBe(true);
        // a resumes: its renewal finds the lease another's.
        paused.advance(2 * LEASE_MS);
        await a.cluster.relay?.renew();
        await until(() => a.cluster.relay?.sessions.has('cam') === false);
        expect(await metricsOf(a)).toContain('switchboard_relay_fenced_total 1');
        expect(next.cluster.relay?.sessions.has('cam')).toBe(true);
      },
      [{ clock: paused, config: { relayCapacity: 20 } }],
    );
  });

  test('every instance stands still at once (a starved machine): on waking, the owner renews before anyone may take its session', async () => {
    await withCluster(3, {}, async (cluster) => {
      const { instances } = cluster;
      const { owner, others } = await relaySession(instances);
      await advance(cluster, LEASE_MS);
      // Three lease times pass with no timer run anywhere; then the others happen to wake first: each
      // renews (its load is live again, so it has room) and sweeps before the owner's renewal comes.
      cluster.clock.jump(3 * LEASE_MS);
      await Promise.all(others.map((i) => i.cluster.relay?.renew()));
      await Promise.all(others.map((i) => i.cluster.relay?.sweep()));
      expect(instances.filter((i) => i.cluster.relay?.sessions.has('cam'))).toEqual([owner]);
      await owner.cluster.relay?.renew();
      await advance(cluster, 2 * LEASE_MS);
      expect(instances.filter((i) => i.cluster.relay?.sessions.has('cam'))).toEqual([owner]);
      const metrics = await Promise.all(instances.map(metricsOf));
      expect(metrics.some((m) => /switchboard_relay_(failovers|fenced)_total [1-9]/.test(m))).toBe(false);
    });
  });

  test('Redis restarts mid-session: the owner keeps its session, nobody takes it over, signalling goes on', async () => {
    await withCluster(3, {}, async (cluster, streams) => {
      const { instances } = cluster;
      const { owner, others } = await relaySession(instances);
      const [other] = others;
      const dev = await openEvents(`${other.url}/events/cam/dev`);
      streams.push(dev);
      await dev.next(fromServer('offer'));
      await redis.stop();
      await redis.start();
      await until(() => instances.every((i) => i.cluster.link.isUp), 'every instance reconnected');
      await advance(cluster, 2 * LEASE_MS);
      expect(instances.filter((i) => i.cluster.relay?.sessions.has('cam'))).toEqual([owner]);
      await call(other.url, 'POST', '/register/cam/v1');
      const v1 = await openEvents(`${other.url}/events/cam/v1`);
      streams.push(v1);
      await v1.next(fromServer('offer'));
      const metrics = await Promise.all(instances.map(metricsOf));
      expect(metrics.some((m) => /switchboard_relay_failovers_total [1-9]/.test(m))).toBe(false);
    });
  });
});

describe('drain', () => {
  test('a draining owner hands its sessions over: the new owner offers first, then its own media closes', async () => {
    await withCluster(3, {}, async (cluster, streams) => {
      const { instances } = cluster;
      const { owner, others } = await relaySession(instances);
      // The publisher's stream is on the draining instance itself: the new offer reaches it before it ends.
      const dev = await openEvents(`${owner.url}/events/cam/dev`);
      await call(others[0].url, 'POST', '/register/cam/v1');
      const v1 = await openEvents(`${others[1].url}/events/cam/v1`);
      streams.push(dev, v1);
      await dev.next(fromServer('offer'));
      await v1.next(fromServer('offer'));
      let done = false;
      const handover = owner.cluster.handover(5000).then(() => {
        done = true;
      });
      await until(() => {
        // The handover waits on real time in production; here on the manual clock.
        cluster.clock.advance(25);
        return done;
      }, 'the handover');
      await handover;
      const next = await ownerOf(others, 'cam');
      expect(owner.cluster.relay?.sessions.size).toBe(0);
      await v1.next(fromServer('offer'));
      await dev.next(fromServer('offer'));
      const metrics = await metricsOf(owner);
      expect(metrics).toContain('switchboard_relay_handovers_total 1');
      expect(metrics).toContain('switchboard_relay_handover_seconds_count 1');
      expect((await metricsOf(next)).includes('switchboard_relay_placements_total{why="handover"} 1')).toBe(true);
    });
  });
});
