import { Elysia, t } from 'elysia';
import type { PeerAccess } from '../auth/access';
import type { Guards } from '../auth/guards';
import { bearerToken } from '../auth/tokens';
import { describe, TAGS } from '../docs/describe';
import { type ErrorCode, SignalError } from '../errors';
import { Id } from '../sessions/model';
import { type IceServer, IceServerResponse, type IceServerSource } from './ice-servers';

export const IceQuery = t.Object({
  sessionId: t.Optional({ ...Id, description: 'the session of the peer whose token is sent (outside AUTH_MODE=open)' }),
  peerId: t.Optional({ ...Id, description: 'the peer whose token is sent; its id names time-limited TURN usernames (TURN_SECRET)' }),
  token: t.Optional(t.String({ description: "the peer's token, for clients that cannot set Authorization" })),
});
export type IceQuery = typeof IceQuery.static;
export const IceHeaders = t.Object({
  authorization: t.Optional(t.String({ description: "Bearer <the peer's token> (or ?token=): outside AUTH_MODE=open, TURN credentials are only for a registered peer" })),
});

const ICE_DOC = describe({
  summary: 'STUN and TURN servers',
  description:
    'In AUTH_MODE=open, anyone gets the TURN credentials, named after ?peerId=. Otherwise they are only for a registered peer: ' +
    'send its token (Authorization: Bearer, or ?token=) with ?sessionId= and ?peerId=, and the credentials name that peer. ' +
    "Without a token that proves that peer (none, a stale one, another peer's, no sessionId) the answer has the STUN URLs only.",
  tags: [TAGS.ice],
  answers: { 200: { description: 'the servers, with TURN credentials when configured and allowed', schema: IceServerResponse } },
  errors: ['invalid_request', 'backend_unavailable', 'rate_limited'],
});

/** The answers of `authorizePeer` that mean "this token proves no peer": the caller gets no credential, and no error. */
const NOT_PROVEN: ReadonlySet<ErrorCode> = new Set(['unauthorized', 'forbidden', 'session_not_found', 'peer_not_found']);

/**
 * The peer a request proves it is: the one `?sessionId=` and `?peerId=` name, if the token is the one its
 * registration returned; else undefined. A backend that cannot answer (503) is an error, not a refusal.
 */
async function provenPeer(access: PeerAccess, { sessionId, peerId }: IceQuery, token: string | undefined): Promise<string | undefined> {
  if (token === undefined || sessionId === undefined || peerId === undefined) return undefined;
  try {
    await access.authorizePeer(sessionId, peerId, token);
    return peerId;
  } catch (e) {
    if (e instanceof SignalError && NOT_PROVEN.has(e.code)) return undefined;
    throw e;
  }
}

/**
 * `GET /iceServers`. Outside open mode the TURN credentials go only to the peer the token proves, never
 * to a name in the query: the operator's TURN server (or Cloudflare account) is not an open relay. Any
 * other caller still gets a usable answer, STUN only, never an error: a seed client asks before it
 * registers, and a page reloaded with its last token asks before it registers again.
 */
export const iceRoutes = (iceServers: IceServerSource, anonymous: IceServer, { access, limits, address }: Guards) =>
  new Elysia().get(
    '/iceServers',
    async ({ query, headers, request, server }) => {
      limits.iceServers(() => address(request, server));
      if (access.mode === 'open') return iceServers.get(query.peerId);
      const peerId = await provenPeer(access, query, bearerToken(headers.authorization) ?? query.token);
      return peerId === undefined ? anonymous : iceServers.get(peerId);
    },
    { query: IceQuery, headers: IceHeaders, detail: ICE_DOC },
  );
