import { Elysia, ValidationError } from 'elysia';
import { SignalError } from '../errors';
import { ID_PATTERN } from '../sessions/model';
import type { Logger, LogLevel } from '../log/logger';
import type { HttpMetrics } from '../metrics/http-metrics';

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
  if (error instanceof Error && 'code' in error && error.code === 'NOT_FOUND') return 'not_found';
  return undefined;
}

/**
 * Every request gets an id (a well-formed incoming X-Request-Id, else a new one), echoed in the
 * response; when the response is sent, it is counted by route template and status and logged as one
 * line with the session and peer ids of its path. Nothing a client sent beyond those ids is logged:
 * no headers, no query, no body.
 */
export const telemetry = (options: TelemetryOptions) => {
  const quiet = new Set(options.quietRoutes);
  return new Elysia()
    .onRequest((context) => {
      const incoming = context.request.headers.get(REQUEST_ID_HEADER);
      context.set.headers[REQUEST_ID_HEADER] = incoming !== null && REQUEST_ID.test(incoming) ? incoming : options.requestId();
    })
    // Runs once the response is handed to the server (for a stream: once it starts).
    .onAfterResponse({ as: 'global' }, (context) => {
      const { request, route, params, set, responseValue, error } = context as typeof context & { error?: unknown };
      const status = responseValue instanceof Response ? responseValue.status : typeof set.status === 'number' ? set.status : 200;
      options.http.record(request.method, route, status);

      const level: LogLevel = status >= 500 ? 'error' : route && quiet.has(route) ? 'debug' : 'info';
      if (!options.logger.enabled(level)) return;
      const { sessionId, peerId } = (params ?? {}) as { sessionId?: string; peerId?: string };
      options.logger[level]('request', {
        requestId: set.headers[REQUEST_ID_HEADER],
        method: request.method,
        route: route || undefined,
        status,
        error: status >= 400 ? errorCode(error) : undefined,
        sessionId: loggable(sessionId),
        peerId: loggable(peerId),
      });
    });
};
