import { Elysia, ValidationError } from 'elysia';
import { SignalError } from '../errors';
import type { Logger, LogLevel } from '../log/logger';
import type { HttpMetrics } from '../metrics/http-metrics';
import { ID_PATTERN } from '../sessions/model';

export const REQUEST_ID_HEADER = 'x-request-id';

/** An incoming request id is kept if it is this: short, and safe in a header and a log line. */
const REQUEST_ID = /^[A-Za-z0-9._~:@+=/-]{1,128}$/;

export interface TelemetryOptions {
  logger: Logger;
  http: HttpMetrics;
  /** Makes a request id for a request that brings none. */
  requestId: () => string;
  /**
   * Route templates whose requests are logged at debug level only: the relay's hot path, and what
   * probes and scrapers call every few seconds.
   */
  quietRoutes: readonly string[];
}

const ID = new RegExp(ID_PATTERN);
/** Ids are logged only when well-formed: a malformed one is whatever a client put in the path. */
const loggable = (id: string | undefined) => (id !== undefined && ID.test(id) ? id : undefined);

/** The error code a response was given for, when there was one. */
function errorCode(error: unknown): string | undefined {
  if (error instanceof SignalError) return error.code;
  if (error instanceof ValidationError) return 'invalid_request';
  // Our body reader's errors arrive wrapped in Elysia's ParseError.
  if (error instanceof Error && error.cause instanceof SignalError) return error.cause.code;
  return undefined;
}

type RequestParams = { sessionId?: string; peerId?: string } | undefined;

/**
 * Every request gets an id (a well-formed incoming X-Request-Id, else a new one), echoed in the
 * response; once its response is made, it is counted by route template and status and logged as one
 * line with the session and peer ids of its path. Nothing a client sent beyond those ids is logged:
 * no headers, no query, no body.
 */
export class Telemetry {
  private readonly quiet: ReadonlySet<string>;

  constructor(private readonly options: TelemetryOptions) {
    this.quiet = new Set(options.quietRoutes);
  }

  /** The hooks, for every route used after it. */
  plugin() {
    return (
      new Elysia()
        .onRequest(({ request, set }) => {
          set.headers[REQUEST_ID_HEADER] = this.requestIdOf(request);
        })
        // mapResponse sees every routed answer, errors included, as it is made; it changes none
        // (it returns nothing). Unlike onAfterResponse it costs no extra task per request.
        .mapResponse({ as: 'global' }, (context) => {
          const { request, route, params, set, responseValue, error } = context as typeof context & { error?: unknown };
          // On an error Elysia calls this after each error hook; one that answered nothing is not the answer.
          if (responseValue === undefined && error !== undefined) return;
          const status = responseValue instanceof Response ? responseValue.status : typeof set.status === 'number' ? set.status : 200;
          this.answered(request.method, route, status, set.headers[REQUEST_ID_HEADER], params as RequestParams, error);
        })
    );
  }

  /**
   * A request no route matched, answered 404 by the app's error handler: no route hook sees it, so
   * that handler reports it here.
   */
  unmatched(method: string, requestId: unknown): void {
    this.answered(method, undefined, 404, requestId, undefined, undefined, 'not_found');
  }

  /** The request's id: a well-formed incoming X-Request-Id, else a new one. */
  requestIdOf(request: Request): string {
    const incoming = request.headers.get(REQUEST_ID_HEADER);
    return incoming !== null && REQUEST_ID.test(incoming) ? incoming : this.options.requestId();
  }

  /** A failure of the server itself while answering `request` (a bug): logged as an error, with what finds the request's line. */
  failed(request: Request, requestId: unknown, error: unknown): void {
    this.options.logger.error('internal error', { requestId, method: request.method, path: new URL(request.url).pathname, error });
  }

  /** A request answered: counted by route template and status, and logged as one line. */
  answered(method: string, route: string | undefined, status: number, requestId: unknown, params: RequestParams, error: unknown, code?: string): void {
    this.options.http.record(method, route, status);
    const level: LogLevel = status >= 500 ? 'error' : route && this.quiet.has(route) ? 'debug' : 'info';
    if (!this.options.logger.enabled(level)) return;
    this.options.logger[level]('request', {
      requestId,
      method,
      route: route || undefined,
      status,
      error: status >= 400 ? (code ?? errorCode(error)) : undefined,
      sessionId: loggable(params?.sessionId),
      peerId: loggable(params?.peerId),
    });
  }
}
