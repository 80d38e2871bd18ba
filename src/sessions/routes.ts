import { Elysia } from 'elysia';
import { readJsonBody } from '../json-body';
import { MESSAGE_QUEUED, MESSAGE_SENT, PeerParams, type RegisterResponse, SessionParams, SignalBody } from './model';
import type { Signalling } from './service';

export const sessionRoutes = (signalling: Signalling) =>
  new Elysia()
    .post(
      '/register/:sessionId/:peerId',
      ({ params: { sessionId, peerId } }): RegisterResponse => ({
        message: 'session registered successfully',
        sessionId,
        peerId,
        peers: signalling.register(sessionId, peerId).peers,
      }),
      { params: PeerParams },
    )
    .delete(
      '/register/:sessionId/:peerId',
      ({ params: { sessionId, peerId } }) => {
        signalling.leave(sessionId, peerId);
        return { message: 'peer left' };
      },
      { params: PeerParams },
    )
    .post(
      '/message/:sessionId/:peerId',
      ({ params: { sessionId, peerId }, body, set }) => {
        if (signalling.send(sessionId, peerId, body) === 'sent') return MESSAGE_SENT;
        set.status = 202;
        return MESSAGE_QUEUED;
      },
      { params: PeerParams, body: SignalBody, parse: ({ request }) => readJsonBody(request) },
    )
    .delete(
      '/session/:sessionId',
      ({ params: { sessionId } }) => {
        signalling.closeSession(sessionId);
        return { message: 'session closed' };
      },
      { params: SessionParams },
    );
