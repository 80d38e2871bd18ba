import type { Server } from 'bun';
import type { CorsHeaders } from '../cors';
import { internalErrorResponse, SignalError } from '../errors';
import { REQUEST_ID_HEADER, type Telemetry } from './telemetry';

/** The content type of a JSON answer of a route served by Bun itself, as `Response.json` gives it. */
export const JSON_ANSWER_TYPE = 'application/json;charset=utf-8';

/** What a route served by Bun itself answers when it does not refuse, as text: its status, text and content type. */
export interface NativeAnswer {
  status: number;
  text: string;
  type: string;
}

/** What a route served by Bun itself answers with a body of its own (an event stream): the body and its headers, to which the edge adds its own. */
export interface NativeStream {
  body: ReadableStream | null;
  headers: Readonly<Record<string, string>>;
}

/** A request as Bun's router hands it over: with the path's parameters (a `BunRequest` is one). */
export type RoutedRequest = Request & { readonly params: Readonly<Record<string, string>> };

export interface NativeEdge {
  telemetry: Telemetry;
  cors: CorsHeaders;
}

/** A response made elsewhere (a refusal), given the CORS headers and the request id. */
function withEdgeHeaders(response: Response, corsHeaders: Readonly<Record<string, string>>, requestId: string): Response {
  for (const [name, value] of Object.entries(corsHeaders)) response.headers.set(name, value);
  response.headers.set(REQUEST_ID_HEADER, requestId);
  return response;
}

/**
 * A route that Bun's router answers itself, outside Elysia's chain, with everything that chain gives
 * every answer: the request id, the CORS headers, the request's count and log line, and a refusal as
 * the one JSON envelope (a failure that is not a refusal is a 500, logged). For the hot path only: a
 * request for the route's path with another method, or that Bun's router does not match, goes to Elysia.
 */
export function nativeRoute(
  edge: NativeEdge,
  route: string,
  method: string,
  /** A refusal is thrown; a stream is answered with its headers and the edge's. */
  handle: (request: RoutedRequest, server: Server<unknown>) => Promise<NativeAnswer | NativeStream>,
): (request: RoutedRequest, server: Server<unknown>) => Promise<Response> {
  const { telemetry, cors } = edge;
  // The headers of a text answer but its request id, per CORS record (one per listed origin) and
  // content type: a copy of a Headers costs less than building one from an object.
  const prepared = new WeakMap<object, Map<string, Headers>>();
  const headersFor = (corsHeaders: Readonly<Record<string, string>>, type: string, requestId: string) => {
    let byType = prepared.get(corsHeaders);
    if (!byType) {
      byType = new Map();
      prepared.set(corsHeaders, byType);
    }
    let base = byType.get(type);
    if (!base) {
      base = new Headers({ ...corsHeaders, 'content-type': type });
      byType.set(type, base);
    }
    const headers = new Headers(base);
    headers.set(REQUEST_ID_HEADER, requestId);
    return headers;
  };
  return async (request, server) => {
    const requestId = telemetry.requestIdOf(request);
    const corsHeaders = cors(request.headers.get('origin'));
    try {
      const answer = await handle(request, server);
      if ('body' in answer) {
        telemetry.answered(method, route, 200, requestId, request.params, undefined);
        // Every header in the init: a response's headers read or set after it is made become an object
        // of their own, which would live as long as the stream (a few hundred bytes each).
        return new Response(answer.body, { headers: { ...answer.headers, ...corsHeaders, [REQUEST_ID_HEADER]: requestId } });
      }
      telemetry.answered(method, route, answer.status, requestId, request.params, undefined);
      return new Response(answer.text, { status: answer.status, headers: headersFor(corsHeaders, answer.type, requestId) });
    } catch (error) {
      const response = withEdgeHeaders(error instanceof SignalError ? error.toResponse() : internalErrorResponse(), corsHeaders, requestId);
      if (!(error instanceof SignalError)) telemetry.failed(request, requestId, error);
      telemetry.answered(method, route, response.status, requestId, request.params, error);
      return response;
    }
  };
}
