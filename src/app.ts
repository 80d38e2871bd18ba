import { cors } from '@elysiajs/cors';
import { Elysia, ValidationError } from 'elysia';
import { adminRoutes } from './admin/routes';
import { Admin } from './admin/service';
import { PeerAccess } from './auth/access';
import { guards } from './auth/guards';
import { JwtVerifier } from './auth/jwt';
import { randomToken, type TokenGenerator } from './auth/tokens';
import page from './client/index.html';
import { type Clock, systemClock } from './clock';
import type { Config } from './config';
import { LocalDelivery } from './delivery/local';
import { errorResponse, SignalError } from './errors';
import { iceServerSource } from './ice/ice-servers';
import { iceRoutes } from './ice/routes';
import { Limits } from './limits/limits';
import { Notifier } from './notify/notifier';
import type { HtmlImport } from './page/bundle';
import { pageRoutes } from './page/routes';
import { sessionRoutes } from './sessions/routes';
import { Signalling } from './sessions/service';
import { SessionStore } from './sessions/store';
import { Heartbeat } from './sse/heartbeat';
import { eventRoutes } from './sse/routes';

export interface AppDeps {
  clock: Clock;
  /** Peer, join and session tokens. */
  newToken: TokenGenerator;
  /** Ids of notifications and of sessions the admin API names. */
  newId: () => string;
  /** Where the server's own log lines go. */
  log: (line: string) => void;
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
  const newToken = deps.newToken ?? randomToken;
  const newId = deps.newId ?? (() => crypto.randomUUID());
  const log = deps.log ?? ((line: string) => console.log(line));
  const store = new SessionStore();
  const delivery = new LocalDelivery(config.maxQueue);
  const notifier = Notifier.fromConfig(config, { clock, newId, log });
  const signalling = new Signalling(config, { store, delivery, clock, listener: notifier?.notify });
  const heartbeat = new Heartbeat(clock, config.pingIntervalMs);
  const anyOrigin = config.corsOrigins.includes('*');
  const jwt = config.authMode === 'jwt' ? JwtVerifier.fromConfig(config, clock) : undefined;
  const access = new PeerAccess(config, { store, newToken, jwt });
  const guard = guards(access, new Limits(config, clock), config.trustProxy);

  // The client page is served by pageRoutes from the built bundle, not as Bun's native HTML route:
  // that route takes no headers, and the page needs its Content-Security-Policy and nosniff.
  return new Elysia()
    .decorate('signalling', signalling)
    .decorate('access', access)
    .onStop(() => notifier?.stop())
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
    .use(sessionRoutes(signalling, guard))
    .use(eventRoutes(signalling, guard, { heartbeat, maxQueued: streamQueue(config.maxQueue), retryMs: RECONNECT_MS }))
    .use(adminRoutes(new Admin(config, { store, signalling, newToken, newId }), access))
    .use(pageRoutes(page as unknown as HtmlImport, { tls: Boolean(config.tlsCert) }));
}

export type App = ReturnType<typeof createApp>;

/**
 * Events a stream queues ahead of its socket. Kept well inside the resume window, so that the events
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
