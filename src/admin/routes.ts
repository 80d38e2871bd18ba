import { Elysia } from 'elysia';
import type { PeerAccess } from '../auth/access';
import { bearerToken } from '../auth/tokens';
import { readJsonBody } from '../json-body';
import { SessionParams } from '../sessions/model';
import { CreateSessionBody } from './model';
import type { Admin } from './service';

/**
 * The server-to-server API, behind `Authorization: Bearer <ADMIN_TOKEN>`. Without ADMIN_TOKEN every
 * route answers 403 `admin_disabled`. The token is checked before the body is read.
 */
export const adminRoutes = (admin: Admin, access: PeerAccess) =>
  new Elysia()
    .post(
      '/sessions',
      ({ body, set }) => {
        const created = admin.create(body);
        set.status = 201;
        return created;
      },
      {
        body: CreateSessionBody,
        parse: ({ request }) => {
          access.authorizeAdmin(bearerToken(request.headers.get('authorization')));
          return readJsonBody(request, undefined, {});
        },
      },
    )
    .get(
      '/sessions',
      ({ headers: { authorization } }) => {
        access.authorizeAdmin(bearerToken(authorization));
        return admin.list();
      },
    )
    .get(
      '/sessions/:sessionId',
      ({ params: { sessionId }, headers: { authorization } }) => {
        access.authorizeAdmin(bearerToken(authorization));
        return admin.get(sessionId);
      },
      { params: SessionParams },
    );
