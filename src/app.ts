import { Elysia, ValidationError } from 'elysia';
import { adminRoutes } from './admin/routes';
import { Admin } from './admin/service';
import { PeerAccess } from './auth/access';
import { guards } from './auth/guards';
import { JwtVerifier } from './auth/jwt';
import { randomToken, type TokenGenerator } from './auth/tokens';
import fleetPage from './client/fleet/index.html';
import page from './client/index.html';
import { type Clock, systemClock } from './clock';
import type { ClusterSignalling as ClusterSignallingType } from './cluster/cluster-signalling';
import { type Config, relayMode } from './config';
import { corsHeaders, corsPolicy } from './cors';
import { LocalDelivery } from './delivery/local';
import { eventBounds } from './delivery/rules';
import { WriteBatcher } from './delivery/write-batcher';
import { errorResponse, internalErrorResponse, ownError, SignalError } from './errors';
import { anonymousIceServer, iceServerSource } from './ice/ice-servers';
import { iceRoutes } from './ice/routes';
import { Limits } from './limits/limits';
import { type Logger, silentLogger } from './log/logger';
import { ConnectionMetrics } from './metrics/relay-metrics';
import { signallingGauges } from './metrics/signalling-metrics';
import { Notifier } from './notify/notifier';
import { Operations } from './ops/operations';
import { REQUEST_ID_HEADER } from './ops/telemetry';
import { type Pages, pageRoutes } from './page/routes';
import { RelayCapacity } from './relay/capacity';
import { LazyRelay } from './relay/lazy';
import type { SignallingBackend } from './sessions/backend';
import type { SessionListener } from './sessions/events';
import { LocalSignalling } from './sessions/local-signalling';
import { MessageIntake } from './sessions/messages';
import { Registrations } from './sessions/registrations';
import { messageRoutes, registerRoutes, sessionRoutes } from './sessions/routes';
import type { ServerOutbox } from './sessions/server-peer';
import { SessionStore } from './sessions/store';
import { Heartbeat } from './sse/heartbeat';
import { EventStreams, eventRoutes, eventStreamRoutes } from './sse/routes';
import { whipRoutes } from './whip/routes';
import { WhipService } from './whip/service';
import { socketRoutes, WS_SERVER_OPTIONS } from './ws/routes';

export interface AppDeps {
  clock: Clock;
  /** Where log lines go; none are written without one. */
  logger: Logger;
  /** Ids for requests that bring no X-Request-Id. */
  requestId: () => string;
  /** Monotonic milliseconds, for delivery latency. */
  monotonic: () => number;
  /** Peer, join and session tokens. */
  newToken: TokenGenerator;
  /** Ids of notifications and of sessions the admin API names. */
  newId: () => string;
  /** This instance's id in a cluster (REDIS_URL): its pub/sub channel. */
  instanceId: string;
}

/** How long an EventSource waits before it reconnects after losing its stream. */
const RECONNECT_MS = 1000;

/**
 * Builds one complete server, sharing nothing with another: its own store, delivery, timers, metrics
 * and routes. It returns the Elysia `app` (`app.handle` answers a request without a socket,
 * `app.listen` starts the listener) and the parts that `index.ts` and tests drive, with the one
 * `stop()`.
 */
export function createApp(config: Config, deps: Partial<AppDeps> = {}) {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? silentLogger;
  const newToken = deps.newToken ?? randomToken;
  const newId = deps.newId ?? (() => crypto.randomUUID());
  const heartbeat = new Heartbeat(clock, config.pingIntervalMs);
  // The sessions' gauges read the backend, which is built with the observer that Operations makes.
  let backend: SignallingBackend | undefined;
  const ops = new Operations(config, { ...deps, clock, logger, gauges: signallingGauges(() => backend?.gauges, heartbeat) });
  const notifier = Notifier.fromConfig(config, { clock, newId, logger: logger.child({ component: 'notify' }) });
  // WHIP/WHEP resources follow their peers' registrations; the service is built once the backend is.
  let whip: WhipService | undefined;
  const listener: SessionListener = (event) => {
    notifier?.notify(event);
    whip?.observe(event);
  };
  const { signalling, ready, relay, relayCapacity } = signallingBackend(config, { clock, observer: ops.observer, logger, listener }, ops, deps.instanceId, deps.monotonic);
  backend = signalling;
  const drain = ops.drain(signalling);
  const jwt = config.authMode === 'jwt' ? JwtVerifier.fromConfig(config, clock) : undefined;
  const access = new PeerAccess(config, { directory: signalling, newToken, jwt });
  const guard = guards(access, new Limits(config, clock), config.trustProxy);
  const iceLogger = logger.child({ component: 'ice' });
  const iceServers = iceServerSource(config, clock, { log: (message) => iceLogger.warn(message) });
  // WHIP and WHEP answer with this process's media: not in a cluster, whose relay sessions live on their owner.
  whip = new WhipService(config, { signalling, relay: config.redisUrl ? undefined : relay, access, iceServers });

  // The client page is served by pageRoutes from the built bundle, not as Bun's native HTML route:
  // that route takes no headers, and the page needs its Content-Security-Policy and nosniff.
  const messages = new MessageIntake(signalling, guard);
  const registrations = new Registrations(signalling, guard, iceServers);
  // Every stream's and socket's writes of a turn of the loop leave together, after it.
  const batcher = new WriteBatcher((error) => logger.error('internal error', { component: 'streams', error }));
  const events = new EventStreams(signalling, guard, { heartbeat, batcher, maxQueued: streamQueue(config.maxQueue), retryMs: RECONNECT_MS });
  // On a listener, Bun's router answers POST and DELETE /register, POST /message and GET /events itself;
  // `app.handle` reaches the same registrations, intake and streams through Elysia's.
  const edge = ops.edge(corsHeaders(config.corsOrigins));
  const routes = { ...messageRoutes(messages, edge), ...eventStreamRoutes(events, edge), ...registerRoutes(registrations, edge) };
  const app = new Elysia({ websocket: WS_SERVER_OPTIONS, serve: { routes } })
    .onError(({ code, error, request, set }) => {
      const response = errorAnswer(code, error, request);
      // Metrics and the request log read the status from here.
      set.status = response.status;
      if (code === 'NOT_FOUND') ops.unmatched(request.method, set.headers[REQUEST_ID_HEADER]);
      if (response.status >= 500 && !(error instanceof SignalError)) ops.failed(request, set.headers[REQUEST_ID_HEADER], error);
      return response;
    })
    // Before CORS, whose preflight answers end the request early.
    .use(ops.telemetry())
    .use(corsPolicy(config.corsOrigins))
    .use(iceRoutes(iceServers, anonymousIceServer(config), guard))
    .use(sessionRoutes(signalling, guard, messages, registrations))
    .use(eventRoutes(events))
    .use(socketRoutes(signalling, guard, { heartbeat, batcher, clock, maxQueued: streamQueue(config.maxQueue), logger: logger.child({ component: 'ws' }) }))
    .use(whipRoutes(whip, guard))
    .use(adminRoutes(new Admin(config, { signalling, newToken, newId }), access))
    .use(ops.routes())
    .use(pageRoutes({ '/': page, '/fleet': fleetPage } as unknown as Pages, { tls: Boolean(config.tlsCert) }));

  let stopping: Promise<void> | undefined;
  const stop = async (graceful: boolean) => {
    const server = app.server;
    if (server && graceful) await drain.run(server);
    else {
      // The drain's order, without waiting for the requests in flight.
      ops.readiness.drain();
      const stopped = server ? app.stop(true) : undefined;
      signalling.shutdown();
      await stopped;
    }
    notifier?.stop();
    await signalling.close();
  };
  return {
    app,
    /** The sessions backend: in this process, or in Redis with REDIS_URL. */
    signalling,
    /** Resolves once the backend made its first attempt to connect (at once without REDIS_URL). */
    ready,
    /** The graceful stop alone, for a caller that needs its outcome; `stop({ graceful: true })` runs it. */
    drain,
    /** What /readyz reports: its checks, and whether the server drains. */
    readiness: ops.readiness,
    /** The server's `switchboard` peer of relay sessions (in a cluster, of those this instance owns); undefined with RELAY_MODE=off. */
    relay,
    /** The places relay peers hold (MAX_RELAY_PEERS): whatever adds peers to relay sessions takes one. */
    relayCapacity,
    /** The routes Bun's router answers itself on a listener, ahead of Elysia's (POST /message, GET /events). */
    routes,
    /**
     * Stops everything, once (a second call returns the first one's promise), always in this order:
     * /readyz reports draining; the listener closes; every event stream ends (clients reconnect, to
     * another instance); the requests in flight finish (`graceful`: up to SHUTDOWN_TIMEOUT_MS, then
     * they are closed) or are closed at once; the notifier stops; the backend closes (a cluster's
     * waits for its last writes, then leaves Redis). An app that never listened skips the listener.
     */
    stop(options: { graceful?: boolean } = {}): Promise<void> {
      stopping ??= stop(options.graceful ?? false);
      return stopping;
    },
  };
}

/**
 * The sessions in this process (the default), or, with REDIS_URL, in Redis for a cluster of instances;
 * `ready` resolves once the latter made its first attempt to connect.
 */
function signallingBackend(
  config: Config,
  core: { clock: Clock; observer: Operations['observer']; logger: Logger; listener?: SessionListener },
  ops: Operations,
  instanceId: string = crypto.randomUUID(),
  monotonic: () => number = () => performance.now(),
): { signalling: SignallingBackend; ready: Promise<void>; relay?: LazyRelay; relayCapacity?: RelayCapacity } {
  if (!config.redisUrl) {
    const delivery = new LocalDelivery(eventBounds(config), core.observer);
    if (relayMode(config) === 'off') {
      const negotiation = new ConnectionMetrics(monotonic);
      ops.registry.add(negotiation);
      return { signalling: new LocalSignalling(config, { ...core, store: new SessionStore(), delivery, negotiation }), ready: Promise.resolve() };
    }
    // The `switchboard` peer of relay sessions answers through the signalling service it is given to.
    const { relay, negotiation } = relayEngine(config, core, ops, monotonic, (...event) => signalling.fromServer(...event));
    const relayCapacity = new RelayCapacity(config);
    const signalling: LocalSignalling = new LocalSignalling(config, { ...core, store: new SessionStore(), delivery, serverPeer: relay, relayCapacity, negotiation });
    return { signalling, ready: Promise.resolve(), relay, relayCapacity };
  }
  // Loaded only with REDIS_URL: a server of one process never evaluates the cluster's modules.
  const { ClusterSignalling } = require('./cluster/cluster-signalling') as { ClusterSignalling: typeof ClusterSignallingType };
  if (relayMode(config) === 'off') {
    const cluster = new ClusterSignalling({ ...config, redisUrl: config.redisUrl }, { ...core, instanceId });
    ops.readiness.register('redis', () => cluster.link.ping());
    return { signalling: cluster, ready: cluster.start() };
  }
  // Relay sessions in a cluster: each one's media on the instance that holds its lease, which answers
  // into the peers' mailboxes in Redis; the engine is the one process's.
  const { relay } = relayEngine(config, core, ops, monotonic, (...event) => cluster.relay?.outbox(...event) ?? false);
  // RELAY_CAPACITY within the process's own limit: MAX_RELAY_PEERS and one port each in RELAY_PORT_RANGE.
  const limit = new RelayCapacity(config).limit;
  const capacity = config.relayCapacity > 0 ? Math.min(config.relayCapacity, limit) : limit;
  const cluster: ClusterSignallingType = new ClusterSignalling({ ...config, redisUrl: config.redisUrl }, { ...core, instanceId, relay: { engine: relay, capacity } });
  if (cluster.relay) ops.registry.add(cluster.relay);
  ops.readiness.register('redis', () => cluster.link.ping());
  return { signalling: cluster, ready: cluster.start(), relay };
}

/** The relay engine, loaded when the first relay session starts, and its metrics; `outbox` is where `switchboard` writes. */
function relayEngine(
  config: Config,
  core: { clock: Clock; logger: Logger },
  ops: Operations,
  monotonic: () => number,
  outbox: ServerOutbox,
): { relay: LazyRelay; negotiation: ConnectionMetrics } {
  const relayLogger = core.logger.child({ component: 'relay' });
  const negotiation = new ConnectionMetrics(monotonic, () => relay.stats());
  ops.registry.add(negotiation);
  const relay = new LazyRelay(config, {
    clock: core.clock,
    observer: negotiation,
    log: (line) => relayLogger.info(line),
    failed: (error) => relayLogger.error('relay engine failed', { error: String(error) }),
    outbox,
  });
  return { relay, negotiation };
}

function errorAnswer(code: string | number, error: unknown, request: Request): Response {
  if (error instanceof SignalError) return error.toResponse();
  if (error instanceof ValidationError) return validationResponse(error);
  if (code === 'NOT_FOUND') {
    return errorResponse(404, { error: 'not_found', message: `no route for ${request.method} ${new URL(request.url).pathname}` });
  }
  if (code === 'PARSE') {
    // Our body reader's own errors (413, invalid JSON) arrive wrapped in Elysia's ParseError.
    if (error instanceof Error && error.cause instanceof SignalError) return error.cause.toResponse();
    return errorResponse(400, { error: 'invalid_json', message: 'the body could not be parsed' });
  }
  return internalErrorResponse();
}

/** One server as `createApp` returns it. */
export type Switchboard = ReturnType<typeof createApp>;

/** The Elysia app of a `Switchboard`. */
export type App = Switchboard['app'];

/**
 * Events a stream (SSE or WebSocket) queues ahead of its socket. Kept well inside the resume window, so that the events
 * an aborted stream drops can always be replayed.
 */
const streamQueue = (maxQueue: number) => Math.max(1, Math.min(32, maxQueue >> 1));

/** Names the field at fault: `body.type: Expected string`. */
function validationResponse(error: ValidationError): Response {
  const first = error.all[0];
  const path = first && 'path' in first ? first.path.replaceAll('/', '.') : '';
  const own = first && 'schema' in first ? ownError(first.schema) : undefined;
  const detail = own ?? (first && 'summary' in first && first.summary ? first.summary : error.message);
  return errorResponse(400, { error: 'invalid_request', message: `${error.type}${path}: ${detail}` });
}
