import { Elysia } from 'elysia';
import { SignalError } from '../errors';
import { MAX_BODY_BYTES } from '../json-body';
import { PeerParams } from '../sessions/model';
import type { Signalling } from '../sessions/service';
import { EventsQuery, parseLastEventId } from '../sse/routes';
import { WsConnection, type WsConnectionOptions } from './connection';
import { WriteBatcher } from './ws-sink';

/**
 * Bun's WebSocket settings for the whole server (Bun has one set per server). A frame over
 * `maxPayloadLength` closes the connection with 1009 before it is read; one between 64 KiB and that is
 * refused with a 413 error frame, as POST /message refuses such a body.
 */
export const WS_SERVER_OPTIONS = {
  maxPayloadLength: 4 * MAX_BODY_BYTES,
  // Liveness is the heartbeat's (a WebSocket ping each PING_INTERVAL_MS, see WsSink.ping): Bun resets
  // its idle timer on every frame sent, so its own pings would never fire while ping events flow.
  // They stay as the backstop for a connection the heartbeat does not reach.
  idleTimeout: 120,
  sendPings: true,
  // Our sink stops writing at its own, lower mark; this is only Bun's last resort.
  backpressureLimit: 1024 * 1024,
  closeOnBackpressureLimit: true,
  perMessageDeflate: false,
} as const;

export type WsRoutesOptions = Pick<WsConnectionOptions, 'heartbeat' | 'clock' | 'maxQueued'> & Partial<Omit<WsConnectionOptions, 'batcher'>>;

const DEFAULTS = { highWaterBytes: 64 * 1024, maxBadFrames: 5 };

/**
 * Where a stream's credentials will be checked, for /ws as for /events: a separate step before the
 * connection is accepted. Today every registered peer may connect.
 */
function authorizeStream(_peer: PeerParams, _request: Request): void {}

/**
 * `GET /ws/:sessionId/:peerId`: the WebSocket transport, for a peer registered with POST /register. The
 * upgrade goes straight to Bun with a `WsConnection` as the socket's data: Elysia's WebSocket layer would
 * parse, wrap and validate every frame on its way (see BENCHMARKS.md), where this one does it once.
 */
export const socketRoutes = (signalling: Signalling, routeOptions: WsRoutesOptions) => {
  const options: WsConnectionOptions = { ...DEFAULTS, ...routeOptions, batcher: new WriteBatcher() };
  return new Elysia().get(
    '/ws/:sessionId/:peerId',
    ({ params, headers, query, request, server }) => {
      const lastEventId = parseLastEventId(headers['last-event-id'] ?? query.lastEventId);
      authorizeStream(params, request);
      const connection = new WsConnection(signalling, { sessionId: params.sessionId, peerId: params.peerId }, lastEventId, options);
      if (server?.upgrade(request, { data: connection })) return;
      throw new SignalError('upgrade_required', 'this route takes a WebSocket upgrade; GET /events/:sessionId/:peerId serves Server-Sent Events');
    },
    { params: PeerParams, query: EventsQuery },
  );
};
