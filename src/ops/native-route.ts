import type { Server } from 'bun';
import type { CorsHeaders } from '../cors';
import { errorResponse, SignalError } from '../errors';
import type { Logger } from '../log/logger';
import { REQUEST_ID_HEADER, type Telemetry } from './telemetry';

/** What a route served by Bun itself answers when it does not refuse: its status and text. */
export interface NativeAnswer {
  status: number;
  text: string;
}

/** A request as Bun's router hands it over: with the path's parameters (a `BunRequest` is one). */
export type RoutedRequest = Request & { readonly params: Readonly<Record<string, string>> };

export interface NativeEdge {
  telemetry: Telemetry;
  cors: CorsHeaders;
  logger: Logger;
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
  /** The content type of every answer that is not a refusal. */
  type: string,
  handle: (request: RoutedRequest, server: Server<unknown>) => Promise<NativeAnswer>,
): (request: RoutedRequest, server: Server<unknown>) => Promise<Response> {
  const { telemetry, cors, logger } = edge;
  // The headers of an answer but its request id, per CORS record (one per listed origin): a copy of a
  // Headers costs less than building one from an object.
  const prepared = new WeakMap<object, Headers>();
  const headersFor = (corsHeaders: Readonly<Record<string, string>>, requestId: string) => {
    let base = prepared.get(corsHeaders);
    if (!base) {
      base = new Headers({ ...corsHeaders, 'content-type': type });
      prepared.set(corsHeaders, base);
    }
    const headers = new Headers(base);
    headers.set(REQUEST_ID_HEADER, requestId);
    return headers;
  };
  return async (request, server) => {
    const requestId = telemetry.requestIdOf(request);
    const corsHeaders = cors(request.headers.get('origin'));
    try {
      const { status, text } = await handle(request, server);
      telemetry.answered(method, route, status, requestId, request.params, undefined);
      return new Response(text, { status, headers: headersFor(corsHeaders, requestId) });
    } catch (error) {
      const response = error instanceof SignalError ? error.toResponse() : errorResponse(500, { error: 'internal_error', message: 'the server failed; this is a bug' });
      for (const [name, value] of Object.entries(corsHeaders)) response.headers.set(name, value);
      response.headers.set(REQUEST_ID_HEADER, requestId);
      if (!(error instanceof SignalError)) logger.error('internal error', { requestId, method, path: new URL(request.url).pathname, error });
      telemetry.answered(method, route, response.status, requestId, request.params, error);
      return response;
    }
  };
}
