import { type AppDeps, createApp } from '../../src/app';
import type { ClusterSignalling } from '../../src/cluster/cluster-signalling';
import { type Config, defaultConfig } from '../../src/config';
import { listen, ManualClock, type Running } from '../helpers';
import type { SseConnection } from '../sse-client';

/** One instance of a cluster: a server listening (`stop()` ends its streams, whose timeouts start, and leaves Redis). */
export interface Instance extends Running {
  name: string;
  cluster: ClusterSignalling;
  /** Dies as a killed process would: nothing more is written to Redis, nothing is cleaned up. */
  crash(): Promise<void>;
}

export interface Cluster {
  instances: Instance[];
  /** The prefix of the cluster's keys in Redis. */
  prefix: string;
  clock: ManualClock;
  stop(): Promise<void>;
}

let prefixes = 0;

/**
 * `count` instances on real listeners, sharing one Redis and one manual clock (the instances' clocks
 * agree, as NTP makes them). Each cluster gets its own key prefix (unless `config` names one), so
 * that tests sharing a Redis never see each other.
 */
export async function startCluster(
  redisUrl: string,
  count: number,
  config: Partial<Config> = {},
  deps: Partial<AppDeps> = {},
  /** Per instance: settings of its own, and a clock of its own (a process that is paused, or whose clock lags). */
  each: { config?: Partial<Config>; clock?: ManualClock }[] = [],
): Promise<Cluster> {
  const clock = new ManualClock();
  const redisPrefix = config.redisPrefix ?? `t${process.pid}-${++prefixes}-${crypto.randomUUID().slice(0, 8)}`;
  const instances: Instance[] = [];
  for (let i = 0; i < count; i++) {
    const own = each[i] ?? {};
    const server = createApp(defaultConfig({ redisUrl, redisPrefix, ...config, ...own.config }), { clock: own.clock ?? clock, ...deps });
    await server.ready;
    const running = listen(server);
    const cluster = server.signalling as ClusterSignalling;
    if (!cluster.link.isUp) throw new Error(`instance ${i} could not reach Redis at ${redisUrl}`);
    let ended: 'stopped' | 'crashed' | undefined;
    instances.push({
      ...running,
      name: String.fromCharCode(65 + i),
      cluster,
      stop() {
        if (ended === 'crashed') return Promise.resolve();
        ended = 'stopped';
        return running.stop();
      },
      async crash() {
        if (ended) return;
        ended = 'crashed';
        // Redis first, so that nothing the shutdown does reaches it: no detach, what it held is left to its deadlines.
        cluster.link.close();
        cluster.shutdown();
        await running.app.stop(true);
      },
    });
  }
  return {
    instances,
    prefix: redisPrefix,
    clock,
    async stop() {
      await Promise.all(instances.map((i) => i.stop()));
    },
  };
}

/**
 * `withCluster(count, config, body, each?)` for a test file whose Redis is `redisUrl()`: a cluster for
 * `body`, whose streams (those `body` puts in its second argument) are closed and the cluster stopped
 * after, whatever `body` does.
 */
export function clustersOn(redisUrl: () => string) {
  return async (
    count: number,
    config: Partial<Config>,
    body: (c: Cluster, streams: SseConnection[]) => Promise<void>,
    each: Parameters<typeof startCluster>[4] = [],
  ): Promise<void> => {
    const cluster = await startCluster(redisUrl(), count, config, {}, each);
    const streams: SseConnection[] = [];
    try {
      await body(cluster, streams);
    } finally {
      for (const stream of streams) stream.close();
      await cluster.stop();
    }
  };
}

export interface Answer {
  status: number;
  headers: Headers;
  body: any;
}

/** One request to a running instance: `body` is sent as JSON unless it is a string, which is sent as it is. */
export async function call(url: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${url}${path}`, { method, headers, body: body === undefined || typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: keep the text.
  }
  return { status: res.status, headers: res.headers, body: parsed };
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
