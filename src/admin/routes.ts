import { Elysia } from 'elysia';
import type { PeerAccess } from '../auth/access';
import { bearerToken } from '../auth/tokens';
import { describe, TAGS } from '../docs/describe';
import { readJsonBody } from '../json-body';
import { sameOriginOnly } from '../ops/same-origin';
import { SessionParams } from '../sessions/model';
import { CreatedSession, CreateSessionBody, SessionList, SessionView } from './model';
import type { Admin } from './service';

/**
 * The server-to-server API, behind `Authorization: Bearer <ADMIN_TOKEN>`. Without ADMIN_TOKEN every
 * route answers 403 `admin_disabled`. The token is checked before the body is read. No web page calls it
 * (the token must not reach a browser), so its answers carry no CORS headers.
 */
export const adminRoutes = (admin: Admin, access: PeerAccess) =>
  new Elysia()
    .use(sameOriginOnly())
    .post(
      '/sessions',
      async ({ body, set }) => {
        const created = await admin.create(body);
        set.status = 201;
        return created;
      },
      {
        body: CreateSessionBody,
        parse: ({ request }) => {
          access.authorizeAdmin(bearerToken(request.headers.get('authorization')));
          return readJsonBody(request, undefined, {});
        },
        detail: describe({
          summary: 'Create a session for the peers you name',
          description: 'Server to server, with Authorization: Bearer <ADMIN_TOKEN>. Returns one join token per named peer, once.',
          tags: [TAGS.admin],
          answers: { 201: { description: 'created', schema: CreatedSession } },
          errors: ['invalid_json', 'invalid_request', 'unauthorized', 'forbidden', 'admin_disabled', 'session_exists', 'too_many_sessions'],
        }),
      },
    )
    .get(
      '/sessions',
      ({ headers: { authorization } }) => {
        access.authorizeAdmin(bearerToken(authorization));
        return admin.list();
      },
      {
        detail: describe({
          summary: 'List sessions',
          description: 'Every session, its peers, their roles and whether their streams are open.',
          tags: [TAGS.admin],
          answers: { 200: { description: 'the sessions', schema: SessionList } },
          errors: ['unauthorized', 'forbidden', 'admin_disabled'],
        }),
      },
    )
    .get(
      '/sessions/:sessionId',
      ({ params: { sessionId }, headers: { authorization } }) => {
        access.authorizeAdmin(bearerToken(authorization));
        return admin.get(sessionId);
      },
      {
        params: SessionParams,
        detail: describe({
          summary: 'One session',
          tags: [TAGS.admin],
          answers: { 200: { description: 'the session', schema: SessionView } },
          errors: ['invalid_request', 'unauthorized', 'forbidden', 'admin_disabled', 'session_not_found'],
        }),
      },
    );
