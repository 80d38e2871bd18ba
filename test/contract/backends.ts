// The two stores behind one API: one process (sessions in memory) and a cluster (sessions in a real
// redis-server, three instances on real listeners sharing one clock). A contract test runs its scenario
// against each through `Server`, and reads `differences` where the stores are allowed to differ: every
// other difference is a bug. src/ internals are reached from here only.
import { afterAll, afterEach, beforeAll, describe } from 'bun:test';
import type { AppDeps } from '../../src/app';
import type { Config } from '../../src/config';
import { type Answer, type Instance, call as request, startCluster } from '../cluster/helpers';
import { RedisServer } from '../cluster/redis-server';
import { ManualClock, type Running, startServer } from '../helpers';
import { openEvents, type SseConnection } from '../sse-client';
import { openSocket, type WsConnection } from '../ws-client';

export type BackendName = 'local' | 'cluster';

/**
 * Where the stores may differ, one line each (README, "Where the cluster differs", lists the same).
 * A test that meets one of these asks this table instead of naming the backend.
 */
export interface Differences {
  /**
   * What `200 Message sent` on POST /message (or its WebSocket ack) promises. `written`: written to the
   * target's open stream by this process. `taken`: a live instance holding the target's stream took it;
   * that instance's socket may still be backed up, so a stream that stops reading is not answered 202
   * before MAX_QUEUE cuts it.
   */
  sent: 'written' | 'taken';
  /**
   * The token buckets (REGISTER_RATE_PER_MIN, MESSAGE_RATE_PER_S, PEER_MESSAGE_RATE_PER_S, ICE_SERVERS_RATE_PER_MIN) and
   * MAX_STREAMS_PER_IP count per instance: `process` is the whole server, `instance` one of several.
   */
  rateLimits: 'process' | 'instance';
  /** What refusals of MAX_SESSIONS and MAX_EVENT_BYTES call what they bound: `this server holds…`, `this cluster holds…`. */
  scope: 'server' | 'cluster';
  /**
   * Where the server's offer to a relay peer that registered with `?offer=inline` comes: `answer`, in the
   * registration's answer; `stream`, over its stream as without the flag (the instance that took the
   * registration may not be the one carrying the session's media).
   */
  inlineOffer: 'answer' | 'stream';
}

export const differences: Record<BackendName, Differences> = {
  local: { sent: 'written', rateLimits: 'process', scope: 'server', inlineOffer: 'answer' },
  cluster: { sent: 'taken', rateLimits: 'instance', scope: 'cluster', inlineOffer: 'stream' },
};

/** Which instance answers: by default the one the fixture gave the peer (see `Server`). */
export interface At {
  at?: number;
  headers?: Record<string, string>;
  /** Added to the path, without the `?`. */
  query?: string;
}

/**
 * A server as clients see it: one process, or a cluster of `instances`. Requests go to instance `at`
 * (mod `instances`). Without `at`, each peer has a home instance (the peers of a server in the order
 * they are first named: 0, 1, 2, 0, …) where its POSTs and DELETEs go, and its stream (SSE or
 * WebSocket) opens on the next one: in a cluster a peer's requests and its stream are never on the
 * same instance. Streams and sockets opened here close after the test.
 */
export interface Server {
  readonly backend: BackendName;
  readonly differences: Differences;
  readonly instances: number;
  readonly clock: ManualClock;
  url(at?: number): string;
  register(sessionId: string, peerId: string, options?: At): Promise<Answer>;
  message(sessionId: string, peerId: string, body: unknown, options?: At): Promise<Answer>;
  leave(sessionId: string, peerId: string, options?: At): Promise<Answer>;
  close(sessionId: string, options?: At): Promise<Answer>;
  events(sessionId: string, peerId: string, options?: At & { lastEventId?: string }): Promise<SseConnection>;
  ws(sessionId: string, peerId: string, options?: At): Promise<WsConnection>;
  /** An admin route (`/sessions…`) on instance `at` (0 by default). */
  admin(method: string, path: string, body?: unknown, headers?: Record<string, string>, at?: number): Promise<Answer>;
  /**
   * A request for `path`, spread as the peers are: a peer route (`/register|message|events|ws/:s/:p`)
   * goes to that peer's home instance (its stream's instance for /events and /ws), any other to the
   * instances in turn. A string body is sent as it is.
   */
  req(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Answer>;
  /** Any request on instance `at` (0 by default); a string body is sent as it is. */
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>, at?: number): Promise<Answer>;
  /** The instance where `peerId`'s requests go by default; its stream opens on the next. */
  home(peerId: string): number;
  /**
   * Moves the shared clock and waits until every instance acted on the deadlines that fell due
   * (timeouts, idle sessions): what follows sees their effects.
   */
  advance(ms: number): Promise<void>;
  /** Ends every stream and stops the instances; once. */
  stop(): Promise<void>;
}

export interface Backend {
  readonly name: BackendName;
  readonly differences: Differences;
  /** A fresh server (every test builds its own), stopped after the test. */
  start(config?: Partial<Config>, deps?: Partial<AppDeps>): Promise<Server>;
}

const encode = (id: string) => encodeURIComponent(id);
const withQuery = (path: string, query?: string) => (query ? `${path}${path.includes('?') ? '&' : '?'}${query}` : path);

function server(backend: BackendName, urls: string[], clock: ManualClock, sweep: () => Promise<void>, stopAll: () => Promise<void>): Server {
  const homes = new Map<string, number>();
  const opened: { close(): void }[] = [];
  const n = urls.length;
  const home = (peerId: string) => {
    let k = homes.get(peerId);
    if (k === undefined) {
      k = homes.size % n;
      homes.set(peerId, k);
    }
    return k;
  };
  const url = (at = 0) => urls[((at % n) + n) % n] as string;
  const peerPath = (route: string, sessionId: string, peerId: string, query?: string) => withQuery(`/${route}/${encode(sessionId)}/${encode(peerId)}`, query);
  let stopped = false;
  let turn = 0;
  const instanceFor = (path: string) => {
    const peer = /^\/(register|message|events|ws)\/[^/?]+\/([^/?]+)/.exec(path);
    if (!peer) return turn++;
    const k = home(decodeURIComponent(peer[2] as string));
    return peer[1] === 'events' || peer[1] === 'ws' ? k + 1 : k;
  };
  return {
    backend,
    differences: differences[backend],
    instances: n,
    clock,
    url,
    home,
    register: (s, p, o = {}) => request(url(o.at ?? home(p)), 'POST', peerPath('register', s, p, o.query), undefined, o.headers),
    message: (s, p, body, o = {}) => request(url(o.at ?? home(p)), 'POST', peerPath('message', s, p, o.query), body, o.headers),
    leave: (s, p, o = {}) => request(url(o.at ?? home(p)), 'DELETE', peerPath('register', s, p, o.query), undefined, o.headers),
    close: (s, o = {}) => request(url(o.at ?? 0), 'DELETE', withQuery(`/session/${encode(s)}`, o.query), undefined, o.headers),
    async events(s, p, o = {}) {
      const stream = await openEvents(`${url(o.at ?? home(p) + 1)}${peerPath('events', s, p, o.query)}`, { lastEventId: o.lastEventId, headers: o.headers });
      opened.push(stream);
      return stream;
    },
    async ws(s, p, o = {}) {
      const socket = await openSocket(`${url(o.at ?? home(p) + 1)}${peerPath('ws', s, p, o.query)}`);
      opened.push(socket);
      return socket;
    },
    admin: (method, path, body, headers, at = 0) => request(url(at), method, path, body, headers),
    req: (method, path, body, headers) => request(url(instanceFor(path)), method, path, body, headers),
    call: (method, path, body, headers, at = 0) => request(url(at), method, path, body, headers),
    async advance(ms) {
      clock.advance(ms);
      await sweep();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const c of opened.splice(0)) c.close();
      await stopAll();
    },
  };
}

/** For the tests that flood a peer with thousands of requests: on a loaded machine they take seconds. */
export const FLOOD_TIMEOUT_MS = 30_000;

/** The instances of a cluster: how many, so that every test spreads its peers over several. */
const INSTANCES = 3;

/**
 * The two backends, for one test file: registers the file's hooks (one redis-server for all its
 * cluster tests, started before them and removed after; every server a test started, stopped after it).
 * Call it once, at the top of the file.
 */
export function contractBackends(): Backend[] {
  let redis: RedisServer | undefined;
  const running: Server[] = [];
  beforeAll(async () => {
    redis = await RedisServer.start();
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((s) => s.stop()));
  });
  afterAll(async () => {
    await redis?.dispose();
  });
  const track = (s: Server) => {
    running.push(s);
    return s;
  };
  return [
    {
      name: 'local',
      differences: differences.local,
      async start(config = {}, deps = {}) {
        const clock = deps.clock instanceof ManualClock ? deps.clock : new ManualClock();
        const one: Running = startServer(config, { ...deps, clock });
        return track(
          server(
            'local',
            [one.url],
            clock,
            async () => {},
            () => one.stop(),
          ),
        );
      },
    },
    {
      name: 'cluster',
      differences: differences.cluster,
      async start(config = {}, deps = {}) {
        if (!redis) throw new Error('contractBackends() must be called at the top of the test file');
        // bun test kills the processes still running when a test times out, this file's redis-server
        // too: one timeout must not fail every test after it.
        if (!(await redis.accepts())) {
          await redis.stop();
          await redis.start();
        }
        const clock = deps.clock instanceof ManualClock ? deps.clock : new ManualClock();
        const cluster = await startCluster(redis.url, INSTANCES, config, { ...deps, clock });
        const instances: Instance[] = cluster.instances;
        return track(
          server(
            'cluster',
            instances.map((i) => i.url),
            clock,
            async () => {
              await Promise.all(instances.map((i) => i.cluster.sweep()));
            },
            () => cluster.stop(),
          ),
        );
      },
    },
  ];
}

/** One describe block per backend, named after it. */
export function eachBackend(backends: Backend[], body: (backend: Backend) => void): void {
  for (const backend of backends) describe(backend.name, () => body(backend));
}

export type { Config } from '../../src/config';
export type { Answer } from '../cluster/helpers';
export { until } from '../helpers';
