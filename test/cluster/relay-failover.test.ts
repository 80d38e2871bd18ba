// Relay sessions in a cluster of three server processes sharing a real redis-server, with Chromium as
// publisher and viewers (the served page, over SSE and over the WebSocket). The session is placed first,
// then every page is opened on the instances that do not carry its media, so that each event stream and
// each POST crosses to the owner through Redis. Then the owner is killed (kill -9) or stopped (SIGTERM),
// or Redis restarts, and the viewers' own decoded-frame counters (getStats) tell when video is back.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { benchViewer } from '../../bench/relay-peers';
import { browserTests, explainOnFailure, type PeerPage, publish, status, waitConnected, waitVideo } from '../e2e/browser';
import { until } from '../helpers';
import type { ServerProcess } from '../process-helpers';
import { RedisServer } from './redis-server';
import { createRelaySession, killAll, metric, ownerAmong, receivesMore, spawnInstances, withLogs } from './relay-instances';

/**
 * Runs before the page's scripts: samples, every 50 ms, the video frames decoded over every
 * RTCPeerConnection the page made (a connection replaced keeps its count), with the wall clock, so that
 * a test asks when the page had decoded so many frames, or how long decoding stood still.
 */
const WATCH_FRAMES = `(() => {
  const created = [];
  const decoded = new Map();
  const samples = [];
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      created.push(this);
    }
  };
  setInterval(async () => {
    for (const pc of created) {
      if (pc.connectionState === 'closed') continue;
      const stats = [...(await pc.getStats()).values()];
      const frames = stats.filter((r) => r.type === 'inbound-rtp' && r.kind === 'video').reduce((n, r) => n + (r.framesDecoded ?? 0), 0);
      decoded.set(pc, Math.max(decoded.get(pc) ?? 0, frames));
    }
    const total = [...decoded.values()].reduce((n, f) => n + f, 0);
    samples.push([Date.now(), total]);
    if (samples.length > 4000) samples.splice(0, 1000);
  }, 50);
  window.__frames = {
    connections: () => created.length,
    /** Frames decoded at the last sample taken at or before t. */
    at: (t) => samples.filter(([when]) => when <= t).at(-1)?.[1] ?? 0,
    /** When the page had first decoded n frames (undefined: not yet). */
    reached: (n) => samples.find(([, total]) => total >= n)?.[0],
    /** The longest time between two samples whose counts differ, among samples from t on. */
    longestStall(t) {
      let longest = 0;
      let since;
      let last;
      for (const [when, total] of samples) {
        if (when < t) continue;
        if (since === undefined || total !== last) {
          if (since !== undefined) longest = Math.max(longest, when - since);
          since = when;
          last = total;
        }
      }
      return since === undefined ? 0 : Math.max(longest, samples.at(-1)[0] - since);
    },
  };
})();`;

interface FrameWatch {
  connections(): number;
  at(t: number): number;
  reached(n: number): number | undefined;
  longestStall(t: number): number;
}

declare global {
  interface Window {
    __frames: FrameWatch;
  }
}

const { open, stopAfter } = browserTests(WATCH_FRAMES);

let redis: RedisServer;
beforeAll(async () => {
  // Append-only with fsync on every write: a restart keeps the leases and the sessions.
  redis = await RedisServer.start({ appendOnly: true });
});
afterAll(async () => {
  await redis.dispose();
});

/**
 * Frames a viewer must decode after an event to count as decoding again: more than a jitter buffer holds
 * (after a failover the frames come on a new connection anyway), few enough for a loaded machine whose
 * fake camera and encoder run at a fraction of 30 frames/s.
 */
const AGAIN = 10;
/** Frames decoded while Redis is away: at 30 frames/s, longer than a lease. */
const OUTAGE_FRAMES = 60;
/** The failover bound: every viewer decodes again within 5 s of the owner's death. */
const FAILOVER_BOUND_MS = 5000;

/** The instances of the running test: their logs explain a failure. */
let current: ServerProcess[] = [];

/** A test of a scene: when it fails, the error carries the instances' newest log lines. */
const sceneTest = (name: string, body: () => Promise<void>) =>
  test(
    name,
    () =>
      withLogs(() => current, body).finally(() => {
        current = [];
      }),
    90_000,
  );

interface Scene {
  instances: ServerProcess[];
  owner: ServerProcess;
  /** The instances that do not carry the media: every page's streams and POSTs go there. */
  others: [ServerProcess, ServerProcess];
  publisher: PeerPage;
  viewers: { v1: PeerPage; v2: PeerPage };
}

/**
 * Three instances, relay session `cam` placed on one of them (the owner), then the publisher's page on
 * another and viewers on both others (v1 over SSE on the first, v2 over the WebSocket on the second),
 * each decoding video through the owner.
 */
async function scene(env: Record<string, string> = {}): Promise<Scene> {
  // The default lease (2 s): a 1 s one expires on a loaded machine whose owner is late to renew, and the
  // session then moves with nobody killed. 2 s + a sweep + the new connection is the bound's budget.
  const instances = await spawnInstances(redis.url, 3, { RELAY_VIDEO_CODECS: 'h264,vp8', RELAY_LEASE_MS: '2000', ...env });
  stopAfter({ stop: () => killAll(instances) });
  current = instances;
  await createRelaySession(instances[0] as ServerProcess, 'cam');
  const owner = await ownerAmong(instances);
  const others = instances.filter((p) => p !== owner) as [ServerProcess, ServerProcess];
  const [x, y] = others;
  const publisher = await publish(await open(`${x.url}/?session=cam&peer=pub&role=publish&mode=relay`));
  await publisher.page.waitForFunction(() => window.switchboard.phase === 'live', undefined, { timeout: 20_000, polling: 100 });
  const viewers = {
    v1: await open(`${x.url}/?session=cam&peer=v1&role=view`),
    v2: await open(`${y.url}/?session=cam&peer=v2&role=view&transport=ws`),
  };
  const pages = { publisher, ...viewers };
  await explainOnFailure(pages, async () => {
    for (const viewer of Object.values(viewers)) await waitVideo(viewer.page, 'switchboard');
  });
  // Nothing has moved the session yet: the tests' events are the only reason for it to move.
  expect(await ownerAmong(instances)).toBe(owner);
  for (const p of instances) expect(await (await fetch(`${p.url}/metrics`)).text()).toContain('switchboard_relay_placements_total{why="failover"} 0');
  return { instances, owner, others, publisher, viewers };
}

/** Waits until `page` has decoded AGAIN more frames than at `t`, and resolves with when that was (ms since the epoch). */
async function decodesAgain(viewer: PeerPage, t: number, timeoutMs: number): Promise<number> {
  const from = await viewer.page.evaluate((when) => window.__frames.at(when), t);
  let reached: number | undefined;
  await until(
    async () => {
      reached = await viewer.page.evaluate((n) => window.__frames.reached(n), from + AGAIN);
      return reached !== undefined;
    },
    `${AGAIN} frames decoded after ${new Date(t).toISOString()}`,
    timeoutMs,
  );
  return reached as number;
}

/**
 * Checks that the page answered the new owner's offer: the client library opens a new connection for an
 * offer with another server certificate, connected now; one connection per owner.
 */
async function answeredNewOwner(peer: PeerPage): Promise<void> {
  expect(await peer.page.evaluate(() => window.__frames.connections())).toBe(2);
  expect((await status(peer.page)).peers.switchboard).toMatchObject({ connectionState: 'connected', answersSent: 1 });
  expect(await peer.page.locator('#log').innerText()).toContain('switchboard offers a new connection');
}

const relayConnections = (p: ServerProcess) => metric(p, 'switchboard_relay_connections');

describe('relay sessions across three processes, in Chromium', () => {
  sceneTest('the seed flow: a publisher and viewers whose streams are on other instances than the media; a viewer leaves', async () => {
    const { owner, others, publisher, viewers } = await scene();
    const pages = { publisher, ...viewers };
    await explainOnFailure(pages, async () => {
      for (const viewer of Object.values(viewers)) {
        const seen = await status(viewer.page);
        expect(seen).toMatchObject({ mode: 'relay', publisher: 'pub' });
        expect(Object.keys(seen.peers)).toEqual(['switchboard']);
      }
      expect((await status(viewers.v2.page)).transport).toBe('ws');
      await waitConnected(publisher.page, 'switchboard');
      expect(Object.keys((await status(publisher.page)).peers)).toEqual(['switchboard']);
      // All media goes through the owner: three connections there, none on the instances the pages talk to.
      await until(async () => (await relayConnections(owner)) === 3, 'three connections on the owner');
      for (const p of others) expect(await relayConnections(p)).toBe(0);
      // From now on the owner sends more than it receives: a copy for each of the two viewers.
      const [in0, out0] = [await metric(owner, 'switchboard_relay_packets_in_total'), await metric(owner, 'switchboard_relay_packets_out_total')];
      await until(async () => {
        const received = (await metric(owner, 'switchboard_relay_packets_in_total')) - in0;
        return received > 200 && (await metric(owner, 'switchboard_relay_packets_out_total')) - out0 > 1.5 * received;
      }, 'the owner forwarding two copies of what it receives');

      // v2 leaves by its button (DELETE through its instance): the owner closes its connection; v1 goes on.
      await viewers.v2.page.click('#leave');
      await until(async () => (await metric(owner, 'switchboard_relay_viewers')) === 1, 'one viewer left on the owner');
      await decodesAgain(viewers.v1, Date.now(), 10_000);
    });
    for (const p of Object.values(pages)) expect(p.errors).toEqual([]);
  });

  sceneTest(
    `kill -9 of the owner: every viewer (Chromium over SSE and WebSocket, werift) decodes again within ${FAILOVER_BOUND_MS / 1000} s; the publisher answers the new owner's offer`,
    async () => {
      const { owner, others, publisher, viewers } = await scene();
      const pages = { publisher, ...viewers };
      const werift = await benchViewer(others[1].url, 'cam', 'v3');
      stopAfter({ stop: () => werift.close() });
      await receivesMore(werift, 50, 'video at the werift viewer', 20_000);

      const killedAt = Date.now();
      owner.proc.kill('SIGKILL');
      await owner.proc.exited;
      const back = await explainOnFailure(pages, () =>
        Promise.all([
          ...Object.values(viewers).map((v) => decodesAgain(v, killedAt, FAILOVER_BOUND_MS + 5000)),
          receivesMore(werift, 50, 'video at the werift viewer again', FAILOVER_BOUND_MS + 5000),
        ]),
      );
      // Outside explainOnFailure, whose message keeps one line: the milliseconds stay in the failure.
      expect(Math.max(...back) - killedAt).toBeLessThan(FAILOVER_BOUND_MS);
      const next = await ownerAmong(others);
      // The publisher's media reached the new owner through its answer to the new owner's offer.
      for (const p of Object.values(pages)) await answeredNewOwner(p);
      expect(await metric(next, 'switchboard_relay_packets_in_total')).toBeGreaterThan(0);
      expect(await relayConnections(next)).toBe(4);
      expect(await (await fetch(`${next.url}/metrics`)).text()).toContain('switchboard_relay_placements_total{why="failover"} 1');
      for (const p of Object.values(pages)) expect(p.errors).toEqual([]);
    },
  );

  sceneTest('SIGTERM of the owner: it hands the session over and exits 0; video goes on', async () => {
    const { owner, others, publisher, viewers } = await scene();
    const pages = { publisher, ...viewers };
    const stoppedAt = Date.now();
    expect(await owner.stop('SIGTERM')).toBe(0);
    expect(owner.output()).toContain('relay sessions handed over');
    const next = await ownerAmong(others);
    await explainOnFailure(pages, async () => {
      for (const viewer of Object.values(viewers)) {
        const at = await decodesAgain(viewer, stoppedAt, FAILOVER_BOUND_MS + 5000);
        expect(at - stoppedAt).toBeLessThan(FAILOVER_BOUND_MS);
        // The new owner connected first: decoding never stood still for long.
        expect(await viewer.page.evaluate((t) => window.__frames.longestStall(t), stoppedAt)).toBeLessThan(FAILOVER_BOUND_MS);
      }
    });
    expect(await (await fetch(`${next.url}/metrics`)).text()).toContain('switchboard_relay_placements_total{why="handover"} 1');
    for (const p of Object.values(pages)) await answeredNewOwner(p);
    for (const p of Object.values(pages)) expect(p.errors).toEqual([]);
  });

  sceneTest('Redis restarts mid-session: video goes on through the outage, the owner keeps the session, and a viewer joins after', async () => {
    const { instances, owner, others, publisher, viewers } = await scene();
    const pages = { publisher, ...viewers };
    await redis.stop();
    const downAt = Date.now();
    await until(async () => (await Promise.all(instances.map((p) => fetch(`${p.url}/readyz`)))).every((r) => r.status === 503), 'every instance not ready');
    // Decoding through an outage longer than a lease: media does not need Redis.
    for (const viewer of Object.values(viewers)) {
      const from = await viewer.page.evaluate((t) => window.__frames.at(t), downAt);
      await until(async () => (await viewer.page.evaluate((n) => window.__frames.reached(n), from + OUTAGE_FRAMES)) !== undefined, 'decoding with Redis away', 10_000);
    }
    await redis.start();
    await until(async () => (await Promise.all(instances.map((p) => fetch(`${p.url}/readyz`)))).every((r) => r.status === 200), 'every instance ready again', 15_000);
    expect(await ownerAmong(instances)).toBe(owner);
    const late = await open(`${others[1].url}/?session=cam&peer=late&role=view`);
    await explainOnFailure({ ...pages, late }, async () => {
      await waitVideo(late.page, 'switchboard');
      for (const viewer of Object.values(viewers)) await decodesAgain(viewer, Date.now(), 10_000);
    });
    for (const p of instances) expect(await metric(p, 'switchboard_relay_fenced_total')).toBe(0);
    expect(await ownerAmong(instances)).toBe(owner);
    for (const p of [...Object.values(pages), late]) expect(p.errors).toEqual([]);
  });
});
