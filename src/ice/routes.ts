import { Elysia, t } from 'elysia';
import type { Guards } from '../auth/guards';
import { bearerToken } from '../auth/tokens';
import { describe, TAGS } from '../docs/describe';
import { SignalError } from '../errors';
import { Id } from '../sessions/model';
import type { IceServer, IceServerSource } from './ice-servers';

export const IceQuery = t.Object({
  sessionId: t.Optional({ ...Id, description: 'the session of the peer whose token is sent (outside AUTH_MODE=open)' }),
  peerId: t.Optional({ ...Id, description: 'the peer whose token is sent; its id names time-limited TURN usernames (TURN_SECRET)' }),
  token: t.Optional(t.String({ description: "the peer's token, for clients that cannot set Authorization" })),
});
export const IceHeaders = t.Object({
  authorization: t.Optional(t.String({ description: "Bearer <the peer's token> (or ?token=): outside AUTH_MODE=open, TURN credentials are only for a registered peer" })),
});

export const IceServerResponse = t.Object(
  {
    urls: t.Array(t.String(), { description: 'stun:, turn: and turns: URLs' }),
    username: t.Optional(t.String()),
    credential: t.Optional(t.String()),
    ttl: t.Optional(t.Integer({ description: 'seconds the credential stays valid (with TURN_SECRET)' })),
  },
  { description: "One RTCIceServer entry for RTCPeerConnection's iceServers" },
);

const ICE_DOC = describe({
  summary: 'STUN and TURN servers',
  description:
    'In AUTH_MODE=open, anyone gets the TURN credentials, named after ?peerId=. Otherwise they are only for a registered peer: ' +
    "send its token (Authorization: Bearer, or ?token=) with ?sessionId= and ?peerId=, and the credentials name that peer. " +
    'Without a token the answer has the STUN URLs only; a token that is not that peer\'s is refused.',
  tags: [TAGS.ice],
  answers: { 200: { description: 'the servers, with TURN credentials when configured and allowed', schema: IceServerResponse } },
  errors: ['invalid_request', 'forbidden', 'session_not_found', 'peer_not_found', 'backend_unavailable', 'rate_limited'],
});

/**
 * `GET /iceServers`. Outside open mode the TURN credentials go only to the peer the token proves, never
 * to a name in the query: the operator's TURN server (or Cloudflare account) is not an open relay. A
 * caller with no token (a seed client asking before it registers) still gets a usable answer, STUN only.
 */
export const iceRoutes = (iceServers: IceServerSource, anonymous: IceServer, { access, limits, address }: Guards) =>
  new Elysia().get(
    '/iceServers',
    async ({ query, headers, request, server }) => {
      limits.iceServers(() => address(request, server));
      if (access.mode === 'open') return iceServers(query.peerId);
      const token = bearerToken(headers.authorization) ?? query.token;
      if (token === undefined) return anonymous;
      const { sessionId, peerId } = query;
      if (sessionId === undefined || peerId === undefined) {
        throw new SignalError('invalid_request', 'a peer token is checked against its registration: send ?sessionId= and ?peerId= with it');
      }
      await access.authorizePeer(sessionId, peerId, token);
      return iceServers(peerId);
    },
    { query: IceQuery, headers: IceHeaders, detail: ICE_DOC },
  );
