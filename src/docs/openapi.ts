import { openapi } from '@elysiajs/openapi';
import { ErrorEnvelope } from '../errors';
import { STREAM_EVENTS } from '../sse/events';
import { schemaRef, TAGS } from './describe';

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
      description: 'The page loads its viewer (Scalar) from a CDN; the document itself is GET /openapi.json.',
      tags: [TAGS.operations],
      responses: { 200: { description: 'an HTML page', content: { 'text/html': { schema: { type: 'string' as const } } } } },
    },
  },
};

/**
 * `GET /openapi.json` and a documentation page at `/docs`, generated from the routes' TypeBox schemas
 * and their `detail` (see `describe()`): a route added to the app appears without anything listed here.
 */
export const apiDocs = (version: string) =>
  openapi({
    path: DOCS_PATH,
    specPath: OPENAPI_PATH,
    documentation: {
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
      ],
      paths: OWN_PATHS,
      components: {
        schemas: { Error: ErrorEnvelope, ...STREAM_EVENTS, StreamEvent },
        securitySchemes: { metricsToken: { type: 'http' as const, scheme: 'bearer', description: 'METRICS_TOKEN, when set' } },
      },
    },
  });
