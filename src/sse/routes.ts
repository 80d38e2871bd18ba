import { Elysia, t } from 'elysia';
import { describe, schemaRef, TAGS } from '../docs/describe';
import { SignalError } from '../errors';
import { PeerParams } from '../sessions/model';
import type { Signalling } from '../sessions/service';
import type { Heartbeat } from './heartbeat';
import { PeerStream } from './peer-stream';

export interface EventRoutesOptions {
  heartbeat: Heartbeat;
  maxQueued: number;
  retryMs: number;
}

/** `lastEventId` in the query serves clients that cannot set the Last-Event-ID header on a first connect. */
export const EventsQuery = t.Object({ lastEventId: t.Optional(t.String({ description: 'the id to resume after, where the Last-Event-ID header cannot be set' })) });

export const EventsHeaders = t.Object({
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
  errors: ['invalid_request', 'session_not_found', 'peer_not_found', 'superseded', 'resume_gap'],
});

function parseLastEventId(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^\d{1,15}$/.test(value)) {
    throw new SignalError('invalid_request', 'Last-Event-ID must be an event id this server sent (a non-negative integer)');
  }
  return Number(value);
}

export const eventRoutes = (signalling: Signalling, options: EventRoutesOptions) =>
  new Elysia().get(
    '/events/:sessionId/:peerId',
    ({ params: { sessionId, peerId }, headers, query, request, server }) => {
      const lastEventId = parseLastEventId(headers['last-event-id'] ?? query.lastEventId);
      const stream = new PeerStream({ ...options, signal: request.signal });
      signalling.connect(sessionId, peerId, stream, lastEventId);
      // Streams outlive Bun's idle timeout; pings keep them busy and reveal dead clients.
      server?.timeout(request, 0);
      return stream.response;
    },
    { params: PeerParams, query: EventsQuery, headers: EventsHeaders, detail: EVENTS_DOC },
  );
