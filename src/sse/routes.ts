import { Elysia, t } from 'elysia';
import type { Guards } from '../auth/guards';
import { bearerToken } from '../auth/tokens';
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

/**
 * `lastEventId` in the query serves clients that cannot set the Last-Event-ID header on a first connect;
 * `token` serves EventSource, which cannot set Authorization.
 */
export const EventsQuery = t.Object({ lastEventId: t.Optional(t.String()), token: t.Optional(t.String()) });

function parseLastEventId(value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (!/^\d{1,15}$/.test(value)) {
    throw new SignalError('invalid_request', 'Last-Event-ID must be an event id this server sent (a non-negative integer)');
  }
  return Number(value);
}

export const eventRoutes = (signalling: Signalling, { access, limits, address }: Guards, options: EventRoutesOptions) =>
  new Elysia().get(
    '/events/:sessionId/:peerId',
    ({ params: { sessionId, peerId }, headers, query, request, server }) => {
      access.authorizePeer(sessionId, peerId, bearerToken(headers.authorization) ?? query.token);
      const lastEventId = parseLastEventId(headers['last-event-id'] ?? query.lastEventId);
      const release = limits.openStream(address(request, server));
      const stream = new PeerStream({ ...options, signal: request.signal, onEnd: release });
      try {
        signalling.connect(sessionId, peerId, stream, lastEventId);
      } catch (e) {
        // A stream that never attached must still leave the heartbeat and give its slot back.
        stream.abort('refused');
        throw e;
      }
      // Streams outlive Bun's idle timeout; pings keep them busy and reveal dead clients.
      server?.timeout(request, 0);
      return stream.response;
    },
    { params: PeerParams, query: EventsQuery },
  );
