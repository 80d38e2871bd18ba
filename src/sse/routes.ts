import { Elysia, t } from 'elysia';
import type { Guards } from '../auth/guards';
import { bearerToken } from '../auth/tokens';
import { describe, schemaRef, TAGS } from '../docs/describe';
import { SignalError } from '../errors';
import type { SignallingBackend } from '../sessions/backend';
import { PeerParams } from '../sessions/model';
import type { Heartbeat } from './heartbeat';
import { PeerStream, streamStrategy } from './peer-stream';

export interface EventRoutesOptions {
  heartbeat: Heartbeat;
  maxQueued: number;
  retryMs: number;
}

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

export function eventRoutes(signalling: SignallingBackend, { access, limits, address }: Guards, { heartbeat, maxQueued, retryMs }: EventRoutesOptions) {
  // One options object and one queuing strategy for every stream.
  const streams = { heartbeat, retryMs, strategy: streamStrategy(maxQueued) };
  return new Elysia().get(
    '/events/:sessionId/:peerId',
    async ({ params: { sessionId, peerId }, headers, query, request, server }) => {
      await access.authorizePeer(sessionId, peerId, bearerToken(headers.authorization) ?? query.token);
      const lastEventId = parseLastEventId(headers['last-event-id'] ?? query.lastEventId);
      const release = limits.openStream(address(request, server));
      const stream = new PeerStream(streams, { signal: request.signal, onEnd: release });
      try {
        await signalling.connect(sessionId, peerId, stream, lastEventId);
      } catch (e) {
        // A stream that never attached must still leave the heartbeat and give its slot back.
        stream.abort('refused');
        throw e;
      }
      // Streams outlive Bun's idle timeout; pings keep them busy and reveal dead clients.
      server?.timeout(request, 0);
      return stream.response;
    },
    { params: PeerParams, query: EventsQuery, headers: EventsHeaders, detail: EVENTS_DOC },
  );
}
