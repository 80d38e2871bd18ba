import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { RedisClient } from 'bun';
import { peerAddress, redisKey } from '../../src/cluster/protocol';
import type { Config } from '../../src/config';
import { until } from '../helpers';
import { ofType, openEvents, type SseConnection } from '../sse-client';
import { bearer, type Cluster, call, clustersOn, startCluster } from './helpers';
import { RedisServer } from './redis-server';

let redis: RedisServer;
beforeAll(async () => {
  redis = await RedisServer.start();
});
afterAll(async () => {
  await redis.dispose();
});

const PEER_TIMEOUT_MS = 15_000;
const ADMIN_TOKEN = 'admin-token-0123456789';
const admin = bearer(ADMIN_TOKEN);
const TOKEN_MODE: Partial<Config> = { authMode: 'token', adminToken: ADMIN_TOKEN, peerTimeoutMs: PEER_TIMEOUT_MS };

const withCluster = clustersOn(() => redis.url);

/** The url of instance `n` (wrapping round), so that a test spreads its requests over the instances. */
const at = (c: Cluster, n: number) => (c.instances[n % c.instances.length] as { url: string }).url;
/** Every key under `prefix`. */
async function keysOf(raw: RedisClient, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = (await raw.send('SCAN', [cursor, 'MATCH', `${prefix}/*`, 'COUNT', '1000'])) as [string, string[]];
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

const byPeer = (list: { peerId: string }[]): unknown[] => [...list].sort((p, q) => (p.peerId < q.peerId ? -1 : 1));

/** Waits until the admin API no longer knows `sessionId`: its timeout or idle end ran on some instance. */
const gone = (c: Cluster, sessionId: string) =>
  until(async () => (await call(at(c, 0), 'GET', `/sessions/${encodeURIComponent(sessionId)}`, undefined, admin)).status === 404, `session ${sessionId} to end`);

/** Moves the instances' clock on, then has each instance sweep at that time (a sweep the clock ran may have looked earlier). */
async function elapse(c: Cluster, ms: number): Promise<void> {
  c.clock.advance(ms);
  await Promise.all(c.instances.map((i) => i.cluster.sweep()));
}

/**
 * A session made by the admin API with an allow-list, two of its three invited peers registered with
 * their join tokens and reading their streams on different instances.
 */
interface Victim {
  id: string;
  cam: string;
  ops: string;
  spareJoin: string;
  camEvents: SseConnection;
  opsEvents: SseConnection;
}

async function managedSession(c: Cluster, id: string): Promise<Victim> {
  const peers = [
    { peerId: 'cam', role: 'publisher' },
    { peerId: 'ops', role: 'viewer' },
    { peerId: 'spare', role: 'viewer' },
  ];
  const created = await call(at(c, 0), 'POST', '/sessions', { sessionId: id, idleS: 3600, peers }, admin);
  expect(created.status).toBe(201);
  const join = (peerId: string) => (created.body.peers as { peerId: string; token: string }[]).find((p) => p.peerId === peerId)?.token ?? '';
  const cam = await call(at(c, 1), 'POST', `/register/${id}/cam`, undefined, bearer(join('cam')));
  const ops = await call(at(c, 0), 'POST', `/register/${id}/ops`, undefined, bearer(join('ops')));
  expect([cam.status, ops.status]).toEqual([200, 200]);
  const camEvents = await openEvents(`${at(c, 0)}/events/${id}/cam`, { headers: bearer(cam.body.token) });
  const opsEvents = await openEvents(`${at(c, 1)}/events/${id}/ops`, { headers: bearer(ops.body.token) });
  await camEvents.next(ofType('new-peer', 'ops'));
  return { id, cam: cam.body.token, ops: ops.body.token, spareJoin: join('spare'), camEvents, opsEvents };
}

/** The victim's peers, invites, tokens and streams are as they were, and `round`'s messages go through. */
async function expectUntouched(c: Cluster, v: Victim, round: string): Promise<void> {
  const view = await call(at(c, 1), 'GET', `/sessions/${v.id}`, undefined, admin);
  expect(view.status).toBe(200);
  expect(byPeer(view.body.peers)).toEqual([
    { peerId: 'cam', role: 'publisher', streaming: true },
    { peerId: 'ops', role: 'viewer', streaming: true },
  ]);
  expect(byPeer(view.body.invited)).toEqual([
    { peerId: 'cam', role: 'publisher', joined: true },
    { peerId: 'ops', role: 'viewer', joined: true },
    { peerId: 'spare', role: 'viewer', joined: false },
  ]);
  const toOps = await call(at(c, 0), 'POST', `/message/${v.id}/cam`, { target: 'ops', type: 'probe', payload: round }, bearer(v.cam));
  const toCam = await call(at(c, 1), 'POST', `/message/${v.id}/ops`, { target: 'cam', type: 'probe', payload: round }, bearer(v.ops));
  expect([toOps.status, toCam.status]).toEqual([200, 200]);
  expect((await v.opsEvents.next(ofType('probe', 'cam'))).json.payload).toBe(round);
  expect((await v.camEvents.next(ofType('probe', 'ops'))).json.payload).toBe(round);
  // Nothing else reached them: no event of another session, no peer-left, no second new-peer.
  const seen = (s: SseConnection) => s.events.filter((e) => e.json.type !== 'ping').map((e) => `${e.json.type} ${e.json.senderId}`);
  expect(seen(v.camEvents).filter((e) => e !== 'probe ops')).toEqual(['new-peer ops']);
  expect(seen(v.opsEvents).filter((e) => e !== 'probe cam')).toEqual([]);
}

/** The victim's remaining invite still admits its peer, and the allow-list still refuses anyone else. */
async function expectInvitesHold(c: Cluster, v: Victim): Promise<void> {
  expect((await call(at(c, 0), 'POST', `/register/${v.id}/intruder`)).status).toBe(403);
  const spare = await call(at(c, 1), 'POST', `/register/${v.id}/spare`, undefined, bearer(v.spareJoin));
  expect(spare.status).toBe(200);
  expect(spare.body.role).toBe('viewer');
}

/**
 * Everything a session's peers do, in session `sessionId`: two register anonymously, one reads its
 * stream, they message each other (one to one and to all), one leaves. The other is left to time out.
 */
async function churn(c: Cluster, sessionId: string, [first, second]: [string, string]): Promise<void> {
  const one = await call(at(c, 0), 'POST', `/register/${sessionId}/${first}`);
  const two = await call(at(c, 1), 'POST', `/register/${sessionId}/${second}`);
  expect([one.status, two.status]).toEqual([200, 200]);
  const stream = await openEvents(`${at(c, 0)}/events/${sessionId}/${second}`, { headers: bearer(two.body.token) });
  expect((await call(at(c, 1), 'POST', `/message/${sessionId}/${first}`, { target: second, type: 'chatter' }, bearer(one.body.token))).status).toBe(200);
  await stream.next(ofType('chatter', first));
  expect((await call(at(c, 0), 'POST', `/message/${sessionId}/${second}`, { type: 'chatter' }, bearer(two.body.token))).status).toBe(202);
  stream.close();
  expect((await call(at(c, 1), 'DELETE', `/register/${sessionId}/${second}`, undefined, bearer(two.body.token))).status).toBe(200);
}

/**
 * Session ids that shared keys with session "fleet1" (or each other) when keys were "P:s:<sid>",
 * "P:s:<sid>:p" and "P:s:<sid>:i", or that carry each other character ids may have beside
 * letters and digits; and peer ids of the same kind.
 */
const NEIGHBOURS = [
  'fleet1:p',
  'fleet1:i',
  'fleet1:s',
  'fleet1:m',
  'fleet1:p:p',
  's:fleet1',
  'p',
  'i',
  's',
  'sessions',
  'deadlines',
  'fleet1|p',
  'fleet1~',
  'fleet1@h',
  'fleet1.p',
];
const PEER_PAIRS: [string, string][] = [
  ['cam', 'ops'],
  ['a|b', '~'],
  ['@', '.x.'],
  ['x:p', 'x:i'],
  ['x.', 'cam|ops'],
];

describe('cluster: sessions share nothing in Redis, whatever their ids', () => {
  test('an anonymous peer of session "fleet1:p" that times out leaves session fleet1 and its tokens intact', async () => {
    await withCluster(2, TOKEN_MODE, async (c) => {
      const cam = await call(at(c, 0), 'POST', '/register/fleet1/dashcam-7');
      const viewer = await call(at(c, 1), 'POST', '/register/fleet1/viewer-1');
      expect([cam.body.role, viewer.body.role]).toEqual(['publisher', 'viewer']);
      const camEvents = await openEvents(`${at(c, 1)}/events/fleet1/dashcam-7`, { headers: bearer(cam.body.token) });
      const viewerEvents = await openEvents(`${at(c, 0)}/events/fleet1/viewer-1`, { headers: bearer(viewer.body.token) });
      await camEvents.next(ofType('new-peer', 'viewer-1'));

      // With no credential, a registration in session "fleet1:p", left to time out.
      expect((await call(at(c, 1), 'POST', '/register/fleet1:p/x')).status).toBe(200);
      await elapse(c, PEER_TIMEOUT_MS + 1);
      await gone(c, 'fleet1:p');

      // The real device still sends, and the viewer gets it.
      const sent = await call(at(c, 0), 'POST', '/message/fleet1/dashcam-7', { target: 'viewer-1', type: 'offer', payload: { sdp: 'v=0' } }, bearer(cam.body.token));
      expect(sent.status).toBe(200);
      expect((await viewerEvents.next(ofType('offer', 'dashcam-7'))).json.payload).toEqual({ sdp: 'v=0' });
      expect(viewerEvents.events.filter((e) => e.json.type === 'peer-left' || e.json.type === 'new-peer')).toEqual([]);
      // Its id cannot be taken without its token...
      const anonymous = await call(at(c, 1), 'POST', '/register/fleet1/dashcam-7');
      expect(anonymous.status).toBe(401);
      expect(anonymous.body.error).toBe('unauthorized');
      const forged = await call(at(c, 1), 'POST', '/register/fleet1/dashcam-7', undefined, bearer(viewer.body.token));
      expect(forged.status).toBe(403);
      expect(forged.body.error).toBe('forbidden');
      // ...and with it the device registers again, still the publisher.
      const again = await call(at(c, 0), 'POST', '/register/fleet1/dashcam-7', undefined, bearer(cam.body.token));
      expect(again.status).toBe(200);
      expect(again.body.role).toBe('publisher');
      expect(again.body.peers).toEqual(['viewer-1']);
      camEvents.close();
      viewerEvents.close();
    });
  });

  test('registering, messaging, leaving, timing out and ending sessions with colliding ids never change another session', async () => {
    await withCluster(2, TOKEN_MODE, async (c) => {
      const victim = await managedSession(c, 'fleet1');
      await expectUntouched(c, victim, 'before');

      for (const [n, sessionId] of NEIGHBOURS.entries()) await churn(c, sessionId, PEER_PAIRS[n % PEER_PAIRS.length] as [string, string]);
      await expectUntouched(c, victim, 'after the others joined and left');

      // The peers left in the other sessions time out, which ends those sessions.
      await elapse(c, PEER_TIMEOUT_MS + 1);
      for (const sessionId of NEIGHBOURS) await gone(c, sessionId);
      await expectUntouched(c, victim, 'after the others timed out');

      // Sessions of the admin API named like the victim's keys: one ends idle after its peer left,
      // one idle without ever having a peer, one is closed.
      const idle = async (sessionId: string, peers: { peerId: string; role: string }[]) =>
        (await call(at(c, 1), 'POST', '/sessions', { sessionId, idleS: 1, peers }, admin)).body as { peers: { peerId: string; token: string }[] };
      const [withPeer] = (await idle('fleet1:i', [{ peerId: 'cam', role: 'publisher' }])).peers;
      await idle('fleet1:p', [{ peerId: 'ops', role: 'viewer' }]);
      const joined = await call(at(c, 0), 'POST', '/register/fleet1:i/cam', undefined, bearer(withPeer?.token ?? ''));
      expect(joined.status).toBe(200);
      expect((await call(at(c, 1), 'DELETE', '/register/fleet1:i/cam', undefined, bearer(joined.body.token))).status).toBe(200);
      const closing = await call(at(c, 1), 'POST', '/register/fleet1:s/cam');
      expect((await call(at(c, 0), 'DELETE', '/session/fleet1:s', undefined, bearer(closing.body.token))).status).toBe(200);
      await elapse(c, 1_001);
      for (const sessionId of ['fleet1:i', 'fleet1:p', 'fleet1:s']) await gone(c, sessionId);
      await expectUntouched(c, victim, 'after the admin sessions ended');
      await expectInvitesHold(c, victim);
      victim.camEvents.close();
      victim.opsEvents.close();
    });
  }, 30_000);

  test('deployments whose prefixes extend each other ("P" and "P:s") share nothing either', async () => {
    const base = `iso-${crypto.randomUUID().slice(0, 8)}`;
    const outer = await startCluster(redis.url, 1, { ...TOKEN_MODE, redisPrefix: base });
    const inner = await startCluster(redis.url, 1, { ...TOKEN_MODE, redisPrefix: `${base}:s` });
    try {
      const victim = await managedSession(inner, 'fleet1');
      for (const [n, sessionId] of ['s:fleet1', 's:fleet1:p', 's:fleet1:i', 's:s:fleet1'].entries()) {
        await churn(outer, sessionId, PEER_PAIRS[n] as [string, string]);
      }
      await elapse(outer, PEER_TIMEOUT_MS + 1);
      for (const sessionId of ['s:fleet1', 's:fleet1:p', 's:fleet1:i', 's:s:fleet1']) await gone(outer, sessionId);
      await expectUntouched(inner, victim, 'after the other deployment');
      await expectInvitesHold(inner, victim);
      expect((await call(at(outer, 0), 'GET', '/sessions', undefined, admin)).body.sessions).toEqual([]);
      victim.camEvents.close();
      victim.opsEvents.close();
    } finally {
      await Promise.all([outer.stop(), inner.stop()]);
    }
  });

  test('the keys and channel the scripts write are the ones TypeScript names: prefix, kind, then the ids', async () => {
    await withCluster(1, {}, async (c) => {
      const [instance] = c.instances;
      if (!instance) throw new Error('one instance');
      const x = await call(instance.url, 'POST', '/register/fleet1:p/x|1');
      await call(instance.url, 'POST', '/register/fleet1:p/y');
      const stream = await openEvents(`${instance.url}/events/fleet1:p/x|1`, { headers: bearer(x.body.token) });
      await stream.next(ofType('new-peer', 'y'));
      const raw = new RedisClient(redis.url, { autoReconnect: false });
      try {
        const keys = await keysOf(raw, c.prefix);
        const [xa, ya] = [peerAddress('fleet1:p', 'x|1'), peerAddress('fleet1:p', 'y')];
        const p = c.prefix;
        expect(keys.sort()).toEqual(
          [
            redisKey.sessions(p),
            redisKey.deadlines(p),
            redisKey.bytes(p),
            redisKey.holdings(p),
            redisKey.created(p),
            // Each instance's relay load, published whether or not it carries relay sessions.
            redisKey.load(p),
            redisKey.session(p, 'fleet1:p'),
            redisKey.peers(p, 'fleet1:p'),
            redisKey.mailbox(p, xa),
            redisKey.log(p, xa),
            redisKey.holder(p, xa),
            redisKey.mailbox(p, ya),
          ].sort(),
        );
        expect(keys).toContain(`${p}/p/fleet1:p`);
        expect((await raw.send('PUBSUB', ['CHANNELS', `${p}/*`])) as string[]).toEqual([instance.cluster.link.channel]);
        expect(instance.cluster.link.channel.startsWith(`${p}/c/`)).toBe(true);
      } finally {
        raw.close();
        stream.close();
      }
    });
  });

  test('every key the scripts write has a time to live, so that what a cluster whose instances all died left behind goes by itself', async () => {
    await withCluster(2, {}, async (c) => {
      const [a, b] = c.instances;
      if (!a || !b) throw new Error('two instances');
      const raw = new RedisClient(redis.url, { autoReconnect: false });
      const streams: SseConnection[] = [];
      /** Every key of the cluster's prefix that has no time to live, with those that must exist by now. */
      const withoutTtl = async (expected: string[]) => {
        const keys = await keysOf(raw, c.prefix);
        for (const key of expected) expect(keys).toContain(key);
        const ttls = await Promise.all(keys.map(async (k) => [k, (await raw.send('PTTL', [k])) as number] as const));
        return ttls.filter(([, ms]) => ms < 0).map(([k]) => k);
      };
      const log = (peer: string) => redisKey.log(c.prefix, peerAddress('ttl', peer));
      const send = async (n: number, from: string, to: string) =>
        // 202: held until the target reads.
        expect([200, 202]).toContain((await call(at(c, n), 'POST', `/message/ttl/${from}`, { target: to, type: 'hello', payload: n }, bearer(tokens[from] as string))).status);
      const tokens: Record<string, string> = {};
      for (const peer of ['x', 'y', 'z']) tokens[peer] = (await call(a.url, 'POST', `/register/ttl/${peer}`)).body.token;
      try {
        // Before any stream: the first events of the cluster make its log and its byte counts.
        await send(0, 'x', 'y');
        expect(await withoutTtl([log('y'), redisKey.bytes(c.prefix)])).toEqual([]);
        // x reads on b and z on a, each stream opened before its first event; y still reads nothing.
        streams.push(await openEvents(`${b.url}/events/ttl/x`, { headers: bearer(tokens.x as string) }));
        streams.push(await openEvents(`${a.url}/events/ttl/z`, { headers: bearer(tokens.z as string) }));
        for (let i = 1; i <= 3; i++) {
          await send(i, 'y', 'x');
          await send(i, 'x', 'y');
          await send(i, 'y', 'z');
        }
        for (const stream of streams) await stream.next(ofType('hello'));
        expect(await withoutTtl(['x', 'y', 'z'].map(log))).toEqual([]);
      } finally {
        raw.close();
        for (const stream of streams) stream.close();
      }
    });
  });

  test('the events Redis keeps and publishes are their JSON object texts, as every version writes them: instances of two versions read each other', async () => {
    await withCluster(2, {}, async (c) => {
      const [a, b] = c.instances;
      if (!a || !b) throw new Error('two instances');
      await call(a.url, 'POST', '/register/s/x');
      await call(a.url, 'POST', '/register/s/y');
      const raw = new RedisClient(redis.url, { autoReconnect: false });
      const listener = await raw.duplicate();
      const published: string[] = [];
      await listener.subscribe(b.cluster.link.channel, (message) => published.push(message));
      try {
        const y = await openEvents(`${b.url}/events/s/y`);
        // Once a first message has reached y, its stream is attached on b: the next one is published there.
        await call(a.url, 'POST', '/message/s/x', { target: 'y', type: 'hello' });
        await y.next(ofType('hello'));
        const payload = { sdp: 'v=0\r\n', n: 'ü' };
        expect((await call(a.url, 'POST', '/message/s/x', { target: 'y', type: 'offer', payload })).status).toBe(200);
        const event = { type: 'offer', payload, senderId: 'x' };
        expect((await y.next(ofType('offer'))).json).toEqual(event);
        // In y's log, the last entry's event (its first field, e) is the event's whole text.
        const rows = (await raw.send('XRANGE', [redisKey.log(c.prefix, peerAddress('s', 'y')), '-', '+'])) as [string, string[]][];
        const logged = rows.map(([, fields]) => JSON.parse(fields[1] as string));
        expect(logged.at(-1)).toEqual(event);
        expect(logged.map((e) => e.type)).toEqual(['hello', 'offer']);
        // On b's channel, the event frame ends with the same text.
        await until(async () => published.some((m) => m.startsWith('e\n') && m.includes('"offer"')), 'the frame on the channel');
        const frame = published.find((m) => m.startsWith('e\n') && m.includes('"offer"')) as string;
        expect(JSON.parse(frame.slice(frame.lastIndexOf('\n') + 1))).toEqual(event);
        y.close();
      } finally {
        listener.close();
        raw.close();
      }
    });
  });
});
