import { Elysia, t } from 'elysia';
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
export const EventsQuery = t.Object({ lastEventId: t.Optional(t.String()) });

export function parseLastEventId(value: string | undefined): number | undefined {
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
    { params: PeerParams, query: EventsQuery },
  );
