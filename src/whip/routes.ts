import { type TSchema, Type as t } from '@sinclair/typebox';
import { Elysia } from 'elysia';
import type { Guards } from '../auth/guards';
import { bearerToken } from '../auth/tokens';
import { describe, TAGS } from '../docs/describe';
import { type ErrorCode, SignalError } from '../errors';
import type { IceServer } from '../ice/ice-servers';
import { readTextBody } from '../json-body';
import { Id, SessionParams } from '../sessions/model';
import type { Endpoint, WhipService } from './service';

export const SDP = 'application/sdp';
export const SDP_FRAGMENT = 'application/trickle-ice-sdpfrag';

const ResourceParams = t.Object({ sessionId: Id, resourceId: t.String({ pattern: '^[A-Za-z0-9_-]{16,64}$', description: 'the id in the Location of the POST' }) });
const CreateQuery = t.Object({ peer: t.Optional({ ...Id, description: "the client's peer id in the session (default: a JWT's peer in jwt mode, else a random id)" }) });

const ENDPOINT_METHODS = 'POST, OPTIONS';
const RESOURCE_METHODS = 'PATCH, DELETE, OPTIONS';

/** A quoted-string of RFC 9110: what a Link parameter's value is written as. */
const quoted = (value: string) => `"${value.replace(/[\\"]/g, '\\$&')}"`;

/**
 * One `Link: <url>; rel="ice-server"` value per URL (RFC 9725 §4.6), TURN URLs with the credentials
 * when the source gives them.
 */
export function iceServerLinks(server: IceServer): string[] {
  return server.urls.map((url) => {
    const link = `<${url}>; rel="ice-server"`;
    if (!/^turns?:/i.test(url) || server.username === undefined || server.credential === undefined) return link;
    return `${link}; username=${quoted(server.username)}; credential=${quoted(server.credential)}; credential-type="password"`;
  });
}

function headersWith(links: string[], fields: Record<string, string>): Headers {
  const headers = new Headers(fields);
  for (const link of links) headers.append('link', link);
  return headers;
}

/** The body, as text, of a request that must be of `type`: 415 for any other. */
async function bodyOf(request: Request, type: string): Promise<string> {
  const given = request.headers.get('content-type')?.split(';')[0]?.trim().toLowerCase();
  if (given !== type) {
    throw new SignalError('unsupported_media_type', `the body must be ${type}${given ? `, not ${given}` : ' (Content-Type)'}`);
  }
  return readTextBody(request);
}

const methodNotAllowed = (allow: string) => {
  const response = new SignalError('method_not_allowed', `this resource takes ${allow}`).toResponse();
  response.headers.set('allow', allow);
  return response;
};

const SdpBody = t.String({ description: 'SDP' });
const linkHeader = { description: 'one per ICE server URL: <url>; rel="ice-server" (with username, credential, credential-type="password" for TURN)', schema: t.String() };
const text = (contentType: string, schema: TSchema = SdpBody) => ({ schema, contentType });

/** WHIP (`/whip`) or WHEP (`/whep`): the same exchange, publishing or playing. */
function door(endpoint: Endpoint, service: WhipService, { limits, address }: Guards) {
  const name = endpoint.toUpperCase();
  const what = endpoint === 'whip' ? 'publish into' : 'play';
  const createErrors: ErrorCode[] = [
    'invalid_request',
    'invalid_sdp',
    'unauthorized',
    'forbidden',
    'payload_too_large',
    'unsupported_media_type',
    'mode_conflict',
    'publisher_exists',
    'session_full',
    'too_many_sessions',
    'too_many_peers',
    'too_many_relay_peers',
    'relay_full',
    'rate_limited',
  ];
  const app = new Elysia()
    .post(
      `/${endpoint}/:sessionId`,
      async ({ params: { sessionId }, query: { peer }, request, server }) => {
        const client = address(request, server);
        limits.register(() => client);
        const offer = await bodyOf(request, SDP);
        const created = await service.create(endpoint, sessionId, peer, bearerToken(request.headers.get('authorization')), offer, client);
        return new Response(created.answer, {
          status: 201,
          headers: headersWith(iceServerLinks(created.iceServers), { 'content-type': SDP, location: created.location, etag: created.etag, 'accept-patch': SDP_FRAGMENT }),
        });
      },
      {
        params: SessionParams,
        query: CreateQuery,
        parse: 'none',
        detail: {
          ...describe({
            summary: `${name}: ${what} a relay session`,
            description:
              endpoint === 'whip'
                ? "RFC 9725. The body is the SDP offer; the client becomes the relay session's publisher (the session is created if new). Viewers see it as any publisher (new-peer, peer-left). Bearer: an invite's join token or a JWT in token and jwt modes."
                : 'draft-ietf-wish-whep. The body is a receive-only SDP offer; the client is a viewer of the relay session (created if new). Without a publisher yet it is answered all the same, and its video starts with the publisher.',
            tags: [TAGS.whip],
            answers: {
              201: {
                description: 'the SDP answer',
                ...text(SDP),
                headers: {
                  Location: { description: `the resource: /${endpoint}/{sessionId}/{resourceId}, for PATCH and DELETE`, schema: t.String() },
                  ETag: { description: "the resource's entity tag, for If-Match on PATCH", schema: t.String() },
                  'Accept-Patch': { description: SDP_FRAGMENT, schema: t.String() },
                  Link: linkHeader,
                },
              },
            },
            errors: createErrors,
          }),
          requestBody: { required: true, content: { [SDP]: { schema: SdpBody } } },
        },
      },
    )
    .options(
      `/${endpoint}/:sessionId`,
      async () => new Response(null, { status: 204, headers: headersWith(iceServerLinks(await service.publicIceServers()), { 'accept-post': SDP, allow: ENDPOINT_METHODS }) }),
      {
        params: SessionParams,
        detail: describe({
          summary: `${name}: what the endpoint accepts`,
          description: 'Accept-Post, and the ICE servers as Link headers without credentials (those come with the POST). A CORS preflight gets the CORS answer instead.',
          tags: [TAGS.whip],
          answers: { 204: { description: 'accepted', headers: { 'Accept-Post': { description: SDP, schema: t.String() }, Link: linkHeader } } },
          errors: ['invalid_request'],
        }),
      },
    )
    .patch(
      `/${endpoint}/:sessionId/:resourceId`,
      async ({ params: { sessionId, resourceId }, request, server }) => {
        limits.message(() => address(request, server));
        const fragment = await bodyOf(request, SDP_FRAGMENT);
        const patched = await service.patch(
          endpoint,
          sessionId,
          resourceId,
          bearerToken(request.headers.get('authorization')),
          request.headers.get('if-match') ?? undefined,
          fragment,
        );
        if (patched.fragment === undefined) return new Response(null, { status: 204, headers: { etag: patched.etag } });
        return new Response(patched.fragment, { status: 200, headers: { 'content-type': SDP_FRAGMENT, etag: patched.etag } });
      },
      {
        params: ResourceParams,
        parse: 'none',
        detail: {
          ...describe({
            summary: `${name}: trickle ICE candidates, or restart ICE`,
            description:
              'If-Match: the ETag, to add candidates (204); "*" with new a=ice-ufrag and a=ice-pwd, to restart ICE (200 with the server\'s new fragment and a new ETag).',
            tags: [TAGS.whip],
            answers: {
              200: {
                description: "ICE restarted: the server's new credentials and candidates",
                ...text(SDP_FRAGMENT),
                headers: { ETag: { description: 'the new entity tag', schema: t.String() } },
              },
              204: { description: 'candidates added' },
            },
            errors: [
              'invalid_request',
              'invalid_sdp',
              'unauthorized',
              'forbidden',
              'resource_not_found',
              'payload_too_large',
              'precondition_failed',
              'unsupported_media_type',
              'precondition_required',
              'rate_limited',
            ],
          }),
          requestBody: { required: true, content: { [SDP_FRAGMENT]: { schema: t.String({ description: 'RFC 8840 SDP fragment' }) } } },
        },
      },
    )
    .delete(
      `/${endpoint}/:sessionId/:resourceId`,
      async ({ params: { sessionId, resourceId }, request }) => {
        await service.remove(endpoint, sessionId, resourceId, bearerToken(request.headers.get('authorization')));
        return new Response(null, { status: 200 });
      },
      {
        params: ResourceParams,
        detail: describe({
          summary: `${name}: end the resource`,
          description: endpoint === 'whip' ? 'The publisher leaves: its viewers get peer-left and keep their connections for the next publisher.' : 'The viewer leaves.',
          tags: [TAGS.whip],
          answers: { 200: { description: 'ended' } },
          errors: ['invalid_request', 'unauthorized', 'forbidden', 'resource_not_found'],
        }),
      },
    )
    .options(`/${endpoint}/:sessionId/:resourceId`, () => new Response(null, { status: 204, headers: { 'accept-patch': SDP_FRAGMENT, allow: RESOURCE_METHODS } }), {
      params: ResourceParams,
      detail: { hide: true },
    });
  for (const method of ['GET', 'PUT', 'PATCH', 'DELETE']) app.route(method, `/${endpoint}/:sessionId`, () => methodNotAllowed(ENDPOINT_METHODS), { detail: { hide: true } });
  for (const method of ['GET', 'PUT', 'POST']) app.route(method, `/${endpoint}/:sessionId/:resourceId`, () => methodNotAllowed(RESOURCE_METHODS), { detail: { hide: true } });
  return app;
}

/** `POST|OPTIONS /whip/:sessionId`, `PATCH|DELETE /whip/:sessionId/:resourceId`, and the same under `/whep`. */
export const whipRoutes = (service: WhipService, guards: Guards) => new Elysia().use(door('whip', service, guards)).use(door('whep', service, guards));
