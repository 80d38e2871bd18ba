import { Elysia } from 'elysia';
import type { Guards } from '../auth/guards';
import { bearerToken } from '../auth/tokens';
import { describe, TAGS } from '../docs/describe';
import { SignalError } from '../errors';
import { MAX_BODY_BYTES } from '../json-body';
import type { SignallingBackend } from '../sessions/backend';
import { PeerParams } from '../sessions/model';
import { EventsHeaders, EventsQuery, parseLastEventId } from '../sse/routes';
import { WsConnection, type WsConnectionOptions } from './connection';

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

export type WsRoutesOptions = Pick<WsConnectionOptions, 'heartbeat' | 'clock' | 'maxQueued' | 'batcher'> & Partial<Omit<WsConnectionOptions, 'limits'>>;

const DEFAULTS = { highWaterBytes: 64 * 1024, maxBadFrames: 5 };

const SOCKET_DOC = describe({
  summary: "Open a peer's WebSocket",
  description:
    'The WebSocket transport (see the README): the same peer, session and guarantees as GET /events. Server frames are ' +
    'the StreamEvent objects with their event id as `id`; client frames are POST /message bodies with an optional `id`, ' +
    'each answered by an ack `{ack, status, message}` or `{ack, status, error, message}`. Resume with ?lastEventId=.',
  tags: [TAGS.events],
  answers: { 101: { description: 'switching to the WebSocket protocol' } },
  errors: ['invalid_request', 'unauthorized', 'forbidden', 'session_not_found', 'peer_not_found', 'upgrade_required', 'too_many_streams'],
});

/**
 * `GET /ws/:sessionId/:peerId`: the WebSocket transport, for a peer registered with POST /register. The
 * upgrade goes straight to Bun with a `WsConnection` as the socket's data: Elysia's WebSocket layer would
 * parse, wrap and validate every frame on its way (see BENCHMARKS.md), where this one does it once. Elysia's
 * Bun adapter then calls the data's handlers: an internal of Elysia's, hence its exact version in
 * package.json and test/ws/elysia-dispatch.test.ts, which fails when an upgrade changes it.
 */
export const socketRoutes = (signalling: SignallingBackend, { access, limits, address }: Guards, routeOptions: WsRoutesOptions) => {
  const options: WsConnectionOptions = { ...DEFAULTS, ...routeOptions, limits };
  return new Elysia().get(
    '/ws/:sessionId/:peerId',
    async ({ params: { sessionId, peerId }, headers, query, request, server }) => {
      // The checks of GET /events, in its order, before the upgrade: a refusal is a plain HTTP answer.
      await access.authorizePeer(sessionId, peerId, bearerToken(headers.authorization) ?? query.token);
      const lastEventId = parseLastEventId(headers['last-event-id'] ?? query.lastEventId);
      if (request.headers.get('upgrade')?.toLowerCase() !== 'websocket') {
        throw new SignalError('upgrade_required', 'this route takes a WebSocket upgrade; GET /events/:sessionId/:peerId serves Server-Sent Events');
      }
      const client = address(request, server);
      const release = limits.openStream(client);
      const connection = new WsConnection(signalling, sessionId, peerId, lastEventId, options, release, client);
      if (server?.upgrade(request, { data: connection })) return;
      release();
      throw new SignalError('upgrade_required', 'the WebSocket upgrade failed: check its Sec-WebSocket-Key and Sec-WebSocket-Version headers');
    },
    { params: PeerParams, query: EventsQuery, headers: EventsHeaders, detail: SOCKET_DOC },
  );
};
