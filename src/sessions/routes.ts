import { Elysia } from 'elysia';
import { bearerToken } from '../auth/tokens';
import type { Guards } from '../auth/guards';
import { readJsonBody } from '../json-body';
import { MESSAGE_QUEUED, MESSAGE_SENT, PeerParams, type RegisterResponse, SessionParams, SignalBody } from './model';
import type { Signalling } from './service';

export const sessionRoutes = (signalling: Signalling, { access, limits, address }: Guards) =>
  new Elysia()
    .post(
      '/register/:sessionId/:peerId',
      async ({ params: { sessionId, peerId }, headers: { authorization }, request, server }): Promise<RegisterResponse> => {
        limits.register(address(request, server));
        const ticket = await access.ticket(sessionId, peerId, bearerToken(authorization));
        const { peers, auth, lastEventId } = signalling.register(sessionId, peerId, ticket.admit);
        return { message: 'session registered successfully', sessionId, peerId, peers, token: ticket.token, role: auth?.role, lastEventId };
      },
      { params: PeerParams },
    )
    .delete(
      '/register/:sessionId/:peerId',
      ({ params: { sessionId, peerId }, headers: { authorization } }) => {
        access.authorizeLeave(sessionId, peerId, bearerToken(authorization));
        signalling.leave(sessionId, peerId);
        return { message: 'peer left' };
      },
      { params: PeerParams },
    )
    .post(
      '/message/:sessionId/:peerId',
      ({ params: { sessionId, peerId }, headers: { authorization }, body, set }) => {
        access.authorizePeer(sessionId, peerId, bearerToken(authorization));
        limits.peerMessage(sessionId, peerId);
        if (signalling.send(sessionId, peerId, body) === 'sent') return MESSAGE_SENT;
        set.status = 202;
        return MESSAGE_QUEUED;
      },
      {
        params: PeerParams,
        body: SignalBody,
        // The address limit comes first, before the body is even read.
        parse: ({ request, server }) => {
          limits.message(address(request, server));
          return readJsonBody(request);
        },
      },
    )
    .delete(
      '/session/:sessionId',
      ({ params: { sessionId }, headers: { authorization } }) => {
        access.authorizeClose(sessionId, bearerToken(authorization));
        signalling.closeSession(sessionId);
        return { message: 'session closed' };
      },
      { params: SessionParams },
    );
