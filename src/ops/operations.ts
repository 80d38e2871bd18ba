import { Elysia } from 'elysia';
import pkg from '../../package.json';
import type { Clock } from '../clock';
import type { Config } from '../config';
import type { CorsHeaders } from '../cors';
import { apiDocs } from '../docs/openapi';
import { Readiness } from '../health/readiness';
import { healthRoutes } from '../health/routes';
import type { Logger } from '../log/logger';
import { MetricsRegistry } from '../metrics/exposition';
import { HttpMetrics } from '../metrics/http-metrics';
import { ProcessMetrics } from '../metrics/process-metrics';
import { metricsRoutes } from '../metrics/routes';
import { type SignallingGauges, SignallingMetrics } from '../metrics/signalling-metrics';
import { Drain, type DrainDeps } from './drain';
import type { NativeEdge } from './native-route';
import { sameOriginOnly } from './same-origin';
import { Telemetry } from './telemetry';

export type OperationsConfig = Pick<Config, 'metricsToken' | 'shutdownTimeoutMs'>;

export interface OperationsDeps {
  clock: Clock;
  logger: Logger;
  /** What the server holds, read at scrape time. */
  gauges: SignallingGauges;
  /** Monotonic milliseconds, for delivery latency. */
  monotonic?: () => number;
  /** Ids for requests that bring no X-Request-Id. */
  requestId?: () => string;
}

/** Logged at debug level only: the relay's hot path, and what probes and scrapers call. */
const QUIET_ROUTES = ['/message/:sessionId/:peerId', '/healthz', '/readyz', '/metrics'];

/**
 * What operators watch a server with, made once per app: its metrics, its readiness, the request
 * log, a graceful stop, and the routes that expose them. A backend (Redis, say) registers a
 * readiness check on `readiness` and a collector on `registry`; a new route is counted, logged and
 * documented without anything added here.
 */
export class Operations {
  /** The signalling core's observer: message, peer and resume counts, delivery latency. */
  readonly observer: SignallingMetrics;
  readonly readiness: Readiness;
  readonly registry: MetricsRegistry;
  private readonly http = new HttpMetrics();
  private readonly requests: Telemetry;

  constructor(
    private readonly config: OperationsConfig,
    private readonly deps: OperationsDeps,
  ) {
    this.observer = new SignallingMetrics(deps.gauges, deps.monotonic);
    this.readiness = new Readiness(deps.clock);
    this.registry = new MetricsRegistry().add(this.observer).add(this.http).add(new ProcessMetrics(pkg));
    const { logger, requestId = sequentialIds() } = deps;
    this.requests = new Telemetry({ logger, http: this.http, requestId, quietRoutes: QUIET_ROUTES });
  }

  /** Request ids, the request log and HTTP metrics, for every route used after it. */
  telemetry() {
    return this.requests.plugin();
  }

  /** What a route that Bun serves itself needs to answer as the others are (see `nativeRoute`), with these CORS headers. */
  edge(cors: CorsHeaders): NativeEdge {
    return { telemetry: this.requests, cors };
  }

  /** Logs a failure of the server itself (the app's error handler answers it 500). */
  failed(request: Request, requestId: unknown, error: unknown): void {
    this.requests.failed(request, requestId, error);
  }

  /** Counts and logs a request no route matched (the app's error handler answers it). */
  unmatched(method: string, requestId: unknown): void {
    this.requests.unmatched(method, requestId);
  }

  /**
   * `/healthz`, `/readyz`, `/metrics` (for probes and scrapers: no CORS headers), `/openapi.json` and
   * `/docs` (public: any origin may read the API's description).
   */
  routes() {
    const probes = new Elysia().use(sameOriginOnly()).use(healthRoutes(this.readiness)).use(metricsRoutes(this.registry, this.config.metricsToken));
    return new Elysia().use(probes).use(apiDocs(pkg.version));
  }

  /** The graceful stop of a server whose streams `streams` ends. */
  drain(streams: DrainDeps['streams']): Drain {
    const { clock, logger } = this.deps;
    return new Drain(this.config, { readiness: this.readiness, streams, clock, logger });
  }
}

/**
 * Request ids: a random prefix for this process, then a counter. Unique across instances and restarts
 * as a UUID would be, for a fraction of its cost on every request.
 */
export function sequentialIds(): () => string {
  const prefix = crypto.randomUUID().slice(0, 13);
  let n = 0;
  return () => `${prefix}-${(++n).toString(36)}`;
}
