import { Elysia, t } from 'elysia';
import { describe, TAGS } from '../docs/describe';
import { Id } from '../sessions/model';
import type { IceServerSource } from './ice-servers';

export const IceQuery = t.Object({ peerId: t.Optional({ ...Id, description: 'put in time-limited TURN usernames (TURN_SECRET)' }) });

export const IceServerResponse = t.Object(
  {
    urls: t.Array(t.String(), { description: 'stun:, turn: and turns: URLs' }),
    username: t.Optional(t.String()),
    credential: t.Optional(t.String()),
    ttl: t.Optional(t.Integer({ description: 'seconds the credential stays valid (with TURN_SECRET)' })),
  },
  { description: "One RTCIceServer entry for RTCPeerConnection's iceServers" },
);

export const iceRoutes = (iceServers: IceServerSource) =>
  new Elysia().get('/iceServers', ({ query }) => iceServers(query.peerId), {
    query: IceQuery,
    detail: describe({
      summary: 'STUN and TURN servers',
      tags: [TAGS.ice],
      answers: { 200: { description: 'the servers, with TURN credentials when configured', schema: IceServerResponse } },
      errors: ['invalid_request'],
    }),
  });
