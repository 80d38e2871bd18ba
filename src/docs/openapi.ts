import { toOpenAPISchema } from '@elysiajs/openapi/openapi';
import { Elysia } from 'elysia';
import { ErrorEnvelope, SignalError } from '../errors';
import { STREAM_EVENTS } from '../sse/events';
import { ERROR_SCHEMA_REF, schemaRef, TAGS } from './describe';
import { DOCS_ASSET_NAMES, DOCS_ASSETS, DOCS_HEADERS, docsAssets, docsPage } from './page';

export const OPENAPI_PATH = '/openapi.json';
export const DOCS_PATH = '/docs';

/** Any one event of a stream: what the `data:` line of an event holds. */
const StreamEvent = {
  anyOf: Object.keys(STREAM_EVENTS).map((name) => schemaRef(name)),
  description: "The data of one event of GET /events: one line of JSON. Client messages have the type their sender chose, so match the server's own types first.",
};

/** The routes the document cannot find on its own: its own two. */
const OWN_PATHS = {
  [OPENAPI_PATH]: {
    get: {
      operationId: 'getOpenApi',
      summary: 'This OpenAPI document',
      tags: [TAGS.operations],
      responses: { 200: { description: 'the document', content: { 'application/json': { schema: { type: 'object' as const } } } } },
    },
  },
  [DOCS_PATH]: {
    get: {
      operationId: 'getDocs',
      summary: 'This documentation, as a page',
      description: 'Swagger UI, served by this server with its files (nothing from another origin); the document itself is GET /openapi.json.',
      tags: [TAGS.operations],
      responses: { 200: { description: 'an HTML page', content: { 'text/html': { schema: { type: 'string' as const } } } } },
    },
  },
  [`${DOCS_ASSETS}/{name}`]: {
    get: {
      operationId: 'getDocsAsset',
      summary: "A script or stylesheet of the documentation page: Swagger UI's, from inside the server",
      tags: [TAGS.operations],
      parameters: [{ name: 'name', in: 'path' as const, required: true, schema: { type: 'string' as const, enum: [...DOCS_ASSET_NAMES] } }],
      responses: {
        200: { description: 'the file' },
        304: { description: 'unchanged (If-None-Match)' },
        404: { description: 'error: not_found', content: { 'application/json': { schema: { $ref: ERROR_SCHEMA_REF } } } },
      },
    },
  },
};

const DOCUMENTATION = (version: string) => ({
  info: {
    title: 'switchboard',
    version,
    description:
      'WebRTC signalling over HTTP and Server-Sent Events. Every error is a 4xx with the Error body. ' +
      'A peer registers, opens its event stream, and sends messages to the other peers of its session.',
  },
  tags: [
    { name: TAGS.signalling, description: 'sessions, peers and their messages' },
    { name: TAGS.events, description: "a peer's Server-Sent Events stream" },
    { name: TAGS.ice, description: 'STUN and TURN servers for RTCPeerConnection' },
    { name: TAGS.operations, description: 'health, metrics, documentation' },
    { name: TAGS.whip, description: 'WHIP (RFC 9725) and WHEP: publish into and play relay sessions with standard encoders and players' },
  ],
  paths: OWN_PATHS,
  components: {
    schemas: { Error: ErrorEnvelope, ...STREAM_EVENTS, StreamEvent },
    securitySchemes: { metricsToken: { type: 'http' as const, scheme: 'bearer', description: 'METRICS_TOKEN, when set' } },
  },
});

/**
 * `GET /openapi.json` and a documentation page at `/docs`, generated from the routes' TypeBox schemas
 * and their `detail` (see `describe()`): a route added to the app appears without anything listed here.
 * The document is made at its first request, and again only when routes were added since.
 */
export function apiDocs(version: string) {
  const documentation = DOCUMENTATION(version);
  let made: { routes: number; document: object } | undefined;
  const page = docsPage(OPENAPI_PATH);
  const asset = docsAssets(OPENAPI_PATH);
  const app = new Elysia({ name: 'api-docs' });
  return app
    .get(DOCS_PATH, () => new Response(page, { headers: { ...DOCS_HEADERS, 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-cache' } }), {
      detail: { hide: true },
    })
    .get(
      `${DOCS_ASSETS}/:name`,
      async ({ params: { name }, request }) => {
        const file = await asset(name);
        if (!file) throw new SignalError('not_found', `no route for GET ${DOCS_ASSETS}/${name}`);
        // Revalidated on every load: an upgraded server serves its own viewer at once.
        const headers = { ...DOCS_HEADERS, etag: file.etag, 'cache-control': 'no-cache' };
        if (request.headers.get('if-none-match') === file.etag) return new Response(null, { status: 304, headers });
        return new Response(file.body, { headers: { ...headers, 'content-type': file.contentType } });
      },
      { detail: { hide: true } },
    )
    .get(
      OPENAPI_PATH,
      () => {
        if (made?.routes === app.routes.length) return made.document;
        // Routes with a dot in their path (/sdk/switchboard.js) are documented too: none is a static folder.
        // OPTIONS included: the ones WHIP and WHEP answer are part of the API (CORS preflights are not routes).
        const { paths, components } = toOpenAPISchema(app, { staticFile: false, methods: [] });
        const document = {
          ...documentation,
          openapi: '3.1.2',
          paths: { ...paths, ...documentation.paths },
          components: { ...documentation.components, schemas: { ...components.schemas, ...documentation.components.schemas } },
        };
        made = { routes: app.routes.length, document };
        return document;
      },
      { detail: { hide: true } },
    );
}
