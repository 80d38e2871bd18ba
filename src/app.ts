import { cors } from '@elysiajs/cors';
import { Elysia, ValidationError } from 'elysia';
import page from './client/index.html';
import { type Clock, systemClock } from './clock';
import type { Config } from './config';
import { LocalDelivery } from './delivery/local';
import { errorResponse, SignalError } from './errors';
import { iceServerSource } from './ice/ice-servers';
import { iceRoutes } from './ice/routes';
import { sessionRoutes } from './sessions/routes';
import { Signalling } from './sessions/service';
import { SessionStore } from './sessions/store';
import { Heartbeat } from './sse/heartbeat';
import { eventRoutes } from './sse/routes';
import { socketRoutes, WS_SERVER_OPTIONS } from './ws/routes';

export interface AppDeps {
  clock: Clock;
}

/** How long an EventSource waits before it reconnects after losing its stream. */
const RECONNECT_MS = 1000;

/**
 * Builds a complete server: its own store, delivery, timers and routes, nothing shared with another
 * app. `app.decorator.signalling.shutdown()` ends every stream; call it before `app.stop()`, which
 * otherwise waits for streams that never end.
 */
export function createApp(config: Config, deps: Partial<AppDeps> = {}) {
  const clock = deps.clock ?? systemClock;
  const delivery = new LocalDelivery(config.maxQueue);
  const signalling = new Signalling(config, { store: new SessionStore(), delivery, clock });
  const heartbeat = new Heartbeat(clock, config.pingIntervalMs);
  const anyOrigin = config.corsOrigins.includes('*');

  // The client page is a Bun HTML bundle, which must be a native route of Bun.serve. Elysia makes one of
  // `.get('/', page)` only when no global hook exists (CORS adds one), so it is declared here, per
  // method, beside the CORS plugin's own OPTIONS route for '/'.
  // Bun accepts a bundle as a per-method handler; its types do not say so yet.
  const clientRoute = { GET: page as unknown as Response };
  return new Elysia({ serve: { routes: { '/': clientRoute } }, websocket: WS_SERVER_OPTIONS })
    .decorate('signalling', signalling)
    .onError(({ code, error, request }) => {
      if (error instanceof SignalError) return error.toResponse();
      if (error instanceof ValidationError) return validationResponse(error);
      if (code === 'NOT_FOUND') {
        return errorResponse(404, { error: 'not_found', message: `no route for ${request.method} ${new URL(request.url).pathname}` });
      }
      if (code === 'PARSE') {
        // Our body reader's own errors (413, invalid JSON) arrive wrapped in Elysia's ParseError.
        if (error.cause instanceof SignalError) return error.cause.toResponse();
        return errorResponse(400, { error: 'invalid_json', message: 'the body could not be parsed' });
      }
      console.error('internal error', request.method, new URL(request.url).pathname, error);
      return errorResponse(500, { error: 'internal_error', message: 'the server failed; this is a bug' });
    })
    .use(
      cors({
        origin: anyOrigin ? '*' : config.corsOrigins,
        credentials: false,
        methods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
        allowedHeaders: ['Content-Type', 'Authorization', 'Last-Event-ID'],
        exposeHeaders: ['Retry-After'],
        maxAge: 600,
      }),
    )
    .use(iceRoutes(iceServerSource(config, clock)))
    .use(sessionRoutes(signalling))
    .use(eventRoutes(signalling, { heartbeat, maxQueued: streamQueue(config.maxQueue), retryMs: RECONNECT_MS }))
    .use(socketRoutes(signalling, { heartbeat, clock, maxQueued: streamQueue(config.maxQueue) }));
}

export type App = ReturnType<typeof createApp>;

/**
 * Events a stream (SSE or WebSocket) queues ahead of its socket. Kept well inside the resume window, so that the events
 * an aborted stream drops can always be replayed.
 */
const streamQueue = (maxQueue: number) => Math.max(1, Math.min(32, maxQueue >> 1));

/** Names the field at fault: `body.type: Expected string`. */
function validationResponse(error: ValidationError): Response {
  const first = error.all[0];
  const path = first && 'path' in first ? first.path.replaceAll('/', '.') : '';
  const detail = first && 'summary' in first && first.summary ? first.summary : error.message;
  return errorResponse(400, { error: 'invalid_request', message: `${error.type}${path}: ${detail}` });
}
