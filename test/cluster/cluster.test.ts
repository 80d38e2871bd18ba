import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { RedisClient } from 'bun';
import { ofType, openEvents } from '../sse-client';
import { bearer, call, clustersOn } from './helpers';
import { RedisServer } from './redis-server';

/** A Redis user that may do everything but load function libraries, as an ACL of a managed Redis may have it. */
const NO_FUNCTIONS = { user: 'nofunctions', password: 'nofunctions-secret' };

let redis: RedisServer;
beforeAll(async () => {
  redis = await RedisServer.start();
  const admin = new RedisClient(redis.url);
  await admin.send('ACL', ['SETUSER', NO_FUNCTIONS.user, 'on', `>${NO_FUNCTIONS.password}`, '~*', '&*', '+@all', '-function']);
  admin.close();
});
afterAll(async () => {
  await redis.dispose();
});

const ids = (events: { id: string }[]) => events.map((e) => Number(e.id));
const offer = (target: string, n = 1) => ({ target, type: 'offer', payload: { type: 'offer', sdp: `v=0 ${n}` } });

/**
 * Every test below runs twice: with the scripts as Redis functions (FCALL: a user that may load them),
 * and as scripts of their own (EVALSHA: Redis before 7, or a user that may not).
 */
for (const scripts of ['functions', 'eval'] as const) {
  const url = () => (scripts === 'functions' ? redis.url : redis.url.replace('redis://', `redis://${NO_FUNCTIONS.user}:${NO_FUNCTIONS.password}@`));
  const started = clustersOn(url);
  /** Runs `body` with a fresh cluster, stopped whatever happens, whose instances run the scripts as `scripts`. */
  const withCluster: typeof started = (count, config, body, each) =>
    started(
      count,
      config,
      async (cluster, streams) => {
        expect(cluster.instances.map((i) => i.cluster.link.scriptsRunAs)).toEqual(cluster.instances.map(() => scripts));
        await body(cluster, streams);
      },
      each,
    );

  describe(`scripts run as ${scripts}`, () => {
    describe('cluster: three instances as one server', () => {
      test("the seed's full flow with peers, posts and streams spread over three instances", async () => {
        await withCluster(3, {}, async ({ instances: [a, b, c] }) => {
          if (!a || !b || !c) throw new Error('three instances');
          const pub = await call(a.url, 'POST', '/register/live/publisher');
          expect(pub.status).toBe(200);
          expect(pub.body).toMatchObject({ peers: [], role: 'publisher', lastEventId: 0 });
          const pubEvents = await openEvents(`${b.url}/events/live/publisher`);
          expect(pubEvents.status).toBe(200);

          const v1 = await call(b.url, 'POST', '/register/live/viewer1');
          expect(v1.body).toMatchObject({ peers: ['publisher'], role: 'viewer' });
          const v1Events = await openEvents(`${c.url}/events/live/viewer1`);
          const v2 = await call(c.url, 'POST', '/register/live/viewer2');
          expect(v2.body.peers.sort()).toEqual(['publisher', 'viewer1']);
          const v2Events = await openEvents(`${a.url}/events/live/viewer2`);

          expect((await pubEvents.next(ofType('new-peer', 'viewer1'))).id).toBe('1');
          expect((await pubEvents.next(ofType('new-peer', 'viewer2'))).id).toBe('2');
          await v1Events.next(ofType('new-peer', 'viewer2'));

          // The publisher offers to each viewer through one instance; each answers through another.
          for (const [viewer, via] of [
            ['viewer1', c],
            ['viewer2', b],
          ] as const) {
            const sent = await call(via.url, 'POST', '/message/live/publisher', offer(viewer));
            expect(sent.status).toBe(200);
            expect(sent.body).toEqual({ message: 'Message sent' });
          }
          const got1 = await v1Events.next(ofType('offer'));
          expect(got1.json).toEqual({ type: 'offer', payload: { type: 'offer', sdp: 'v=0 1' }, senderId: 'publisher' });
          await v2Events.next(ofType('offer'));
          for (const [viewer, via] of [
            ['viewer1', a],
            ['viewer2', c],
          ] as const) {
            expect((await call(via.url, 'POST', `/message/live/${viewer}`, { target: 'publisher', type: 'answer', payload: { sdp: viewer } })).status).toBe(200);
          }
          await pubEvents.next(ofType('answer', 'viewer1'));
          await pubEvents.next(ofType('answer', 'viewer2'));

          // Trickled candidates keep their order per pair, whichever instance each POST lands on.
          const instances = [a, b, c];
          for (let i = 0; i < 30; i++) {
            const via = instances[i % 3] as (typeof instances)[number];
            const res = await call(via.url, 'POST', '/message/live/publisher', { target: 'viewer1', type: 'ice-candidate', payload: { n: i } });
            expect(res.status).toBe(200);
          }
          const candidates = [];
          for (let i = 0; i < 30; i++) candidates.push((await v1Events.next(ofType('ice-candidate'))).json.payload);
          expect(candidates).toEqual(Array.from({ length: 30 }, (_, n) => ({ n })));
          const v1Ids = ids(v1Events.events);
          expect(v1Ids).toEqual(v1Ids.map((_, i) => (v1Ids[0] as number) + i));

          // A broadcast reaches both viewers.
          expect((await call(b.url, 'POST', '/message/live/publisher', { type: 'bye', payload: 1 })).status).toBe(200);
          await v1Events.next(ofType('bye'));
          await v2Events.next(ofType('bye'));

          // The admin API of any instance sees the whole cluster.
          const leave = await call(c.url, 'DELETE', '/register/live/viewer2');
          expect(leave.status).toBe(200);
          await v2Events.ended;
          await pubEvents.next(ofType('peer-left', 'viewer2'));
          await v1Events.next(ofType('peer-left', 'viewer2'));

          const closed = await call(b.url, 'DELETE', '/session/live');
          expect(closed.body).toEqual({ message: 'session closed' });
          await pubEvents.next(ofType('session-closed'));
          await v1Events.next(ofType('session-closed'));
          await pubEvents.ended;
          await v1Events.ended;
          expect((await call(a.url, 'POST', '/message/live/publisher', offer('viewer1'))).body.error).toBe('session_not_found');
        });
      });

      test('messages for a peer without a stream are held, then written in order on whichever instance it connects to', async () => {
        await withCluster(3, {}, async ({ instances: [a, b, c] }) => {
          if (!a || !b || !c) throw new Error('three instances');
          await call(a.url, 'POST', '/register/s/x');
          const { body } = await call(b.url, 'POST', '/register/s/y');
          for (let n = 1; n <= 5; n++) {
            const res = await call(n % 2 ? a.url : c.url, 'POST', '/message/s/x', offer('y', n));
            expect(res.status).toBe(202);
            expect(res.body).toEqual({ message: 'Message queued' });
          }
          const stream = await openEvents(`${c.url}/events/s/y?lastEventId=${body.lastEventId}`);
          for (let n = 1; n <= 5; n++) expect((await stream.next()).json.payload).toEqual({ type: 'offer', sdp: `v=0 ${n}` });
          expect(ids(stream.events)).toEqual([1, 2, 3, 4, 5]);
          stream.close();
        });
      });

      test('a stream resumes with Last-Event-ID on another instance, exactly once; a takeover supersedes it', async () => {
        await withCluster(3, {}, async ({ instances: [a, b, c] }) => {
          if (!a || !b || !c) throw new Error('three instances');
          await call(a.url, 'POST', '/register/s/x');
          await call(a.url, 'POST', '/register/s/y');
          const first = await openEvents(`${a.url}/events/s/y`);
          for (let n = 1; n <= 3; n++) await call(b.url, 'POST', '/message/s/x', offer('y', n));
          for (let n = 1; n <= 3; n++) await first.next(ofType('offer'));
          first.close();
          await first.ended;
          // While it is away: held.
          for (let n = 4; n <= 6; n++) expect((await call(c.url, 'POST', '/message/s/x', offer('y', n))).status).toBe(202);

          const resumed = await openEvents(`${b.url}/events/s/y`, { lastEventId: first.lastEventId });
          expect(resumed.status).toBe(200);
          const sdps = [];
          for (let n = 4; n <= 6; n++) sdps.push((await resumed.next()).json.payload);
          expect(sdps).toEqual([4, 5, 6].map((n) => ({ type: 'offer', sdp: `v=0 ${n}` })));
          expect(ids(resumed.events)).toEqual([Number(first.lastEventId) + 1, Number(first.lastEventId) + 2, Number(first.lastEventId) + 3]);

          // Attaching elsewhere replaces the stream, as in one process.
          const again = await openEvents(`${c.url}/events/s/y`, { lastEventId: resumed.lastEventId });
          await resumed.ended;
          expect((await call(a.url, 'POST', '/message/s/x', offer('y', 7))).status).toBe(200);
          expect((await again.next()).json.payload).toEqual({ type: 'offer', sdp: 'v=0 7' });

          // Registering the id again, on yet another instance, ends that stream and drops the old ids.
          const taken = await call(a.url, 'POST', '/register/s/y');
          expect(taken.status).toBe(200);
          await again.ended;
          const old = await call(b.url, 'GET', '/events/s/y', undefined, { 'last-event-id': again.lastEventId });
          expect(old.status).toBe(409);
          expect(old.body.error).toBe('superseded');
          const gap = await call(b.url, 'GET', '/events/s/y', undefined, { 'last-event-id': String(taken.body.lastEventId + 50) });
          expect(gap.body.error).toBe('resume_gap');
          const fresh = await openEvents(`${b.url}/events/s/y?lastEventId=${taken.body.lastEventId}`);
          expect(fresh.status).toBe(200);
          expect((await call(c.url, 'POST', '/message/s/x', offer('y', 8))).status).toBe(200);
          expect((await fresh.next()).id).toBe(String(taken.body.lastEventId + 1));
          fresh.close();
        });
      });
    });

    describe('cluster: an instance stopping', () => {
      test('a drained instance ends its streams; they resume on another, and nobody times out meanwhile', async () => {
        await withCluster(3, { peerTimeoutMs: 15_000 }, async ({ instances: [a, b, c], clock }) => {
          if (!a || !b || !c) throw new Error('three instances');
          await call(b.url, 'POST', '/register/s/x');
          await call(b.url, 'POST', '/register/s/y');
          const x = await openEvents(`${a.url}/events/s/x`);
          const y = await openEvents(`${c.url}/events/s/y`);
          await x.next(ofType('new-peer', 'y'));
          const drained = a.drain.run(a.app.server as NonNullable<typeof a.app.server>);
          await x.ended;
          expect(await drained).toBe('drained');
          await a.stop();
          // Held while x is away; x comes back on B within the timeout.
          expect((await call(c.url, 'POST', '/message/s/y', { target: 'x', type: 'held' })).status).toBe(202);
          clock.advance(10_000);
          await Promise.all([b.cluster.sweep(), c.cluster.sweep()]);
          const again = await openEvents(`${b.url}/events/s/x`, { lastEventId: x.lastEventId });
          expect((await again.next()).json.type).toBe('held');
          // Long after, both are still there: each is held by a live instance that renews it.
          for (let i = 0; i < 6; i++) clock.advance(10_000);
          await Promise.all([b.cluster.sweep(), c.cluster.sweep()]);
          expect((await call(b.url, 'POST', '/message/s/x', { target: 'y', type: 'still' })).status).toBe(200);
          await y.next(ofType('still'));
          expect(y.events.some((e) => e.json.type === 'peer-left')).toBe(false);
          again.close();
          y.close();
        });
      });
    });

    describe('cluster: access control and the admin API across instances', () => {
      test('a token issued by one instance is checked by the others', async () => {
        await withCluster(3, { authMode: 'token', adminToken: 'admin-token-0123456789' }, async ({ instances: [a, b, c] }) => {
          if (!a || !b || !c) throw new Error('three instances');
          const x = await call(a.url, 'POST', '/register/s/x');
          const y = await call(b.url, 'POST', '/register/s/y');
          expect(x.body.role).toBe('publisher');
          expect(y.body.role).toBe('viewer');
          expect((await call(c.url, 'POST', '/message/s/x', offer('y'))).status).toBe(401);
          expect((await call(c.url, 'POST', '/message/s/x', offer('y'), bearer(y.body.token))).status).toBe(403);
          expect((await call(c.url, 'POST', '/message/s/x', offer('y'), bearer(x.body.token))).status).toBe(202);
          expect((await call(c.url, 'GET', `/events/s/y?token=${x.body.token}`)).status).toBe(403);
          // Taking over needs the id's token, on any instance.
          expect((await call(c.url, 'POST', '/register/s/x')).status).toBe(401);
          const again = await call(c.url, 'POST', '/register/s/x', undefined, bearer(x.body.token));
          expect(again.status).toBe(200);
          expect((await call(a.url, 'POST', '/message/s/x', offer('y'), bearer(x.body.token))).status).toBe(403);
          // A viewer may not close the session; a publisher may.
          expect((await call(b.url, 'DELETE', '/session/s', undefined, bearer(y.body.token))).status).toBe(403);
          expect((await call(a.url, 'DELETE', '/session/s', undefined, bearer(again.body.token))).status).toBe(200);
        });
      });

      test('a role asked for with ?role= is decided on what the whole cluster holds; relay sessions follow RELAY_MODE', async () => {
        const adminToken = 'admin-token-0123456789';
        await withCluster(3, { authMode: 'token', adminToken }, async ({ instances: [a, b, c] }) => {
          if (!a || !b || !c) throw new Error('three instances');
          const x = await call(a.url, 'POST', '/register/s/x?role=view');
          expect(x.body).toMatchObject({ role: 'viewer', mode: 'mesh' });
          const y = await call(b.url, 'POST', '/register/s/y?role=publish');
          expect(y.body.role).toBe('publisher');
          // y, registered through another instance, is the publisher: z may only view.
          const refused = await call(c.url, 'POST', '/register/s/z?role=publish');
          expect(refused.status).toBe(403);
          expect(refused.body.message).toContain('has publisher y');
          expect((await call(a.url, 'DELETE', '/register/s/y', undefined, bearer(y.body.token))).status).toBe(200);
          expect((await call(c.url, 'POST', '/register/s/z?role=publish')).body.role).toBe('publisher');

          // RELAY_MODE=admin (token mode): a client cannot create a relay session; the admin API can.
          const relay = await call(a.url, 'POST', '/register/r/cam?mode=relay');
          expect(relay.status).toBe(403);
          expect(relay.body).toMatchObject({ error: 'forbidden' });
          expect((await call(b.url, 'GET', '/sessions/r', undefined, bearer(adminToken))).status).toBe(404);
          const created = await call(b.url, 'POST', '/sessions', { mode: 'relay' }, bearer(adminToken));
          expect(created.status).toBe(201);
          expect(created.body.mode).toBe('relay');
          expect((await call(b.url, 'POST', '/sessions', { mode: 'mesh' }, bearer(adminToken))).body.mode).toBe('mesh');
          expect((await call(c.url, 'POST', '/register/s/switchboard')).body.error).toBe('reserved_peer');
          expect((await call(c.url, 'GET', '/sessions/s', undefined, bearer(adminToken))).body.mode).toBe('mesh');
        });
      });

      test('a session the admin API created on one instance admits its invited peers on the others, and ends when idle', async () => {
        const admin = bearer('admin-token-0123456789');
        await withCluster(3, { authMode: 'token', adminToken: 'admin-token-0123456789' }, async ({ instances: [a, b, c], clock }) => {
          if (!a || !b || !c) throw new Error('three instances');
          const created = await call(
            a.url,
            'POST',
            '/sessions',
            {
              sessionId: 'live',
              idleS: 60,
              peers: [
                { peerId: 'cam', role: 'publisher' },
                { peerId: 'ops', role: 'viewer' },
              ],
            },
            admin,
          );
          expect(created.status).toBe(201);
          const [cam, ops] = created.body.peers as { token: string }[];
          expect((await call(b.url, 'POST', '/register/live/intruder')).status).toBe(403);
          const joined = await call(b.url, 'POST', '/register/live/cam', undefined, bearer(cam?.token ?? ''));
          expect(joined.body.role).toBe('publisher');
          expect((await call(c.url, 'POST', '/register/live/ops', undefined, bearer(ops?.token ?? ''))).body.role).toBe('viewer');
          const stream = await openEvents(`${a.url}/events/live/cam`, { headers: bearer(joined.body.token) });

          const view = await call(c.url, 'GET', '/sessions/live', undefined, admin);
          expect(view.body).toMatchObject({ sessionId: 'live', managed: true });
          expect(view.body.peers.sort((p: { peerId: string }, q: { peerId: string }) => p.peerId.localeCompare(q.peerId))).toEqual([
            { peerId: 'cam', role: 'publisher', streaming: true },
            { peerId: 'ops', role: 'viewer', streaming: false },
          ]);
          expect(view.body.invited.sort((p: { peerId: string }, q: { peerId: string }) => p.peerId.localeCompare(q.peerId))).toEqual([
            { peerId: 'cam', role: 'publisher', joined: true },
            { peerId: 'ops', role: 'viewer', joined: true },
          ]);
          const list = await call(b.url, 'GET', '/sessions', undefined, admin);
          expect(list.body.sessions.map((s: { sessionId: string }) => s.sessionId)).toEqual(['live']);
          expect((await call(b.url, 'POST', '/sessions', { sessionId: 'live' }, admin)).body.error).toBe('session_exists');

          // Both leave; the session waits idleS, then ends, once.
          stream.close();
          await call(a.url, 'DELETE', '/register/live/cam', undefined, admin);
          await call(b.url, 'DELETE', '/register/live/ops', undefined, admin);
          expect((await call(c.url, 'GET', '/sessions/live', undefined, admin)).status).toBe(200);
          clock.advance(61_000);
          const deadline = Date.now() + 5000;
          while ((await call(c.url, 'GET', '/sessions/live', undefined, admin)).status !== 404) {
            if (Date.now() > deadline) throw new Error('the idle session did not end');
            await Bun.sleep(20);
          }
        });
      });
    });
  });
}
