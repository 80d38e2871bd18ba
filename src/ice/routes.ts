import { Elysia, t } from 'elysia';
import { Id } from '../sessions/model';
import type { IceServerSource } from './ice-servers';

export const IceQuery = t.Object({ peerId: t.Optional(Id) });

export const iceRoutes = (iceServers: IceServerSource) =>
  new Elysia().get('/iceServers', ({ query }) => iceServers(query.peerId), { query: IceQuery });
