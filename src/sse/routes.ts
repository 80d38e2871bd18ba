import { Elysia, t } from 'elysia';
import type { Guards } from '../auth/guards';
import { bearerToken } from '../auth/tokens';
import { describe, schemaRef, TAGS } from '../docs/describe';
import { refusals, SignalError } from '../errors';
import type { AddressSource } from '../limits/client-ip';
import { type NativeEdge, type NativeStream, nativeRoute } from '../ops/native-route';
import type { SignallingBackend } from '../sessions/backend';
import { PeerParams, queryValues, readPeerParams } from '../sessions/model';
import { PeerStream, type PeerStreamOptions, STREAM_HEADERS } from './peer-stream';

/**
 * `lastEventId` in the query serves clients that cannot set the Last-Event-ID header on a first connect;
 * `token` serves EventSource, which cannot set Authorization.
 */
export const EventsQuery = t.Object({
  lastEventId: t.Optional(t.String({ description: 'the id to resume after, where the Last-Event-ID header cannot be set' })),
  token: t.Optional(t.String({ description: "the peer's token, for EventSource, which cannot set Authorization" })),
});
export const EventsHeaders = t.Object({
  authorization: t.Optional(t.String({ description: "Bearer <the peer's token>, outside AUTH_MODE=open (or ?token=)" })),
  'last-event-id': t.Optional(t.String({ description: 'the id of the last event received: the stream resumes after it (EventSource sends it by itself)' })),
});

const EVENTS_DOC = describe({
  summary: "Open a peer's event stream",
  description:
    'A text/event-stream. It starts with `retry:` and a bare `id:`; then every event is one `id:` line and one `data:` line ' +
    'of JSON, without an `event:` line (EventSource.onmessage sees them all). The data of each event is one of the ' +
    'StreamEvent schemas. Reconnecting with Last-Event-ID delivers every event after it exactly once.',
  tags: [TAGS.events],
  answers: { 200: { description: "the stream; each event's data is a StreamEvent", contentType: 'text/event-stream', schema: schemaRef('StreamEvent') } },
  errors: ['invalid_request', 'unauthorized', 'forbidden', 'session_not_found', 'peer_not_found', 'superseded', 'resume_gap', 'too_many_streams', 'backend_unavailable'],
});

export function parseLastEventId(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^\d{1,15}$/.test(value)) {
    throw new SignalError('invalid_request', 'Last-Event-ID must be an event id this server sent (a non-negative integer)');
  }
  return Number(value);
}

export type EventsQuery = typeof EventsQuery.static;

/** The query of a `GET /events` URL, as Elysia reads one for EventsQuery. */
function readEventsQuery(url: string): EventsQuery {
  const { lastEventId, token } = queryValues(url);
  return { lastEventId, token };
}

/**
 * GET /events/:sessionId/:peerId between the request and its stream, whoever serves it (Elysia's router
 * for `app.handle`, Bun's own routes on a listener): the peer is let in, its resume point read, its
 * stream counted against the address's cap and attached.
 */
export class EventStreams {
  private readonly streams: PeerStreamOptions;

  constructor(
    private readonly signalling: SignallingBackend,
    private readonly guards: Guards,
    { heartbeat, maxQueued, retryMs, batcher }: PeerStreamOptions,
  ) {
    // One options object for every stream.
    this.streams = { heartbeat, retryMs, maxQueued, batcher };
  }

  async open(
    { sessionId, peerId }: PeerParams,
    query: EventsQuery,
    request: Request,
    server: (AddressSource & { timeout(request: Request, seconds: number): void }) | null | undefined,
  ): Promise<NativeStream> {
    const { access, limits, address } = this.guards;
    await access.authorizePeer(sessionId, peerId, bearerToken(request.headers.get('authorization') ?? undefined) ?? query.token);
    const lastEventId = parseLastEventId(request.headers.get('last-event-id') ?? query.lastEventId);
    if (request.method === 'HEAD') return this.head(sessionId, peerId);
    const release = limits.openStream(address(request, server));
    const stream = new PeerStream(this.streams, { onEnd: release });
    try {
      await this.signalling.connect(sessionId, peerId, stream, lastEventId);
    } catch (e) {
      // A stream that never attached must still leave the heartbeat and give its slot back.
      stream.abort('refused');
      throw e;
    }
    // Streams outlive Bun's idle timeout; pings keep them busy and reveal dead clients.
    server?.timeout(request, 0);
    return { body: stream.body, headers: STREAM_HEADERS };
  }

  /**
   * HEAD: what GET would answer, without its body: the same refusals (the token, the ids, a malformed
   * Last-Event-ID, a peer that is not registered), else 200 with the stream's headers. No stream opens,
   * so the peer's open stream is not taken over, as a GET would: a monitor or a proxy that checks the
   * URL with HEAD leaves the peer alone.
   */
  private async head(sessionId: string, peerId: string): Promise<NativeStream> {
    const session = await this.signalling.snapshot(sessionId);
    if (!session) throw refusals.sessionNotFound(sessionId);
    if (!session.peers.some((p) => p.id === peerId)) throw refusals.peerNotFound(sessionId, peerId);
    return { body: null, headers: STREAM_HEADERS };
  }
}

const EVENTS_ROUTE = '/events/:sessionId/:peerId';

/** On a listener, Bun's router answers this path (see `eventStreamRoutes`): this is `app.handle`'s way to the same streams, and the route the API's description is made from. */
export function eventRoutes(events: EventStreams) {
  return new Elysia().get(
    EVENTS_ROUTE,
    async ({ params, query, request, server }) => {
      const { body, headers } = await events.open(params, query, request, server);
      return new Response(body, { headers });
    },
    {
      params: PeerParams,
      query: EventsQuery,
      headers: EventsHeaders,
      detail: EVENTS_DOC,
    },
  );
}

/**
 * GET /events as Bun's own router serves it on a listener: Elysia's context for a request lives as long
 * as its response, and a stream's response lives as long as the stream (1.3 KiB of each open stream
 * was Elysia's). The same streams as the Elysia route, with the same edge; the order is the Elysia
 * route's: the path's ids, the query, then the peer let in.
 */
export const eventStreamRoutes = (events: EventStreams, edge: NativeEdge) => ({
  [EVENTS_ROUTE]: {
    GET: nativeRoute(edge, EVENTS_ROUTE, 'GET', (request, server) => events.open(readPeerParams(request.params), readEventsQuery(request.url), request, server)),
  },
});
