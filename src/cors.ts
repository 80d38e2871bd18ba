// Cross-origin access, for browser clients served from elsewhere (a dashboard, a WHEP player page).
import { cors } from '@elysiajs/cors';
import { Elysia } from 'elysia';

/** Seconds a browser may keep a preflight's answer. */
const PREFLIGHT_MAX_AGE_S = 600;

const METHODS = ['GET', 'POST', 'PATCH', 'DELETE', 'OPTIONS'];
const ALLOWED_HEADERS = ['Content-Type', 'Authorization', 'Last-Event-ID', 'If-Match'];
const EXPOSED_HEADERS = ['Retry-After', 'X-Request-Id', 'Location', 'ETag', 'Link', 'Accept-Patch', 'Accept-Post'];

/** Paths whose own OPTIONS answer matters (WHIP, WHEP: Accept-Post, Link): only their preflights are answered here. */
const OWN_OPTIONS = /^\/(whip|whep)\//;

/**
 * CORS for `origins` (`*` for any). The plugin's own preflight handling answers every OPTIONS request
 * with a bare 204, which would hide the OPTIONS answers of WHIP and WHEP; so preflights (an OPTIONS with
 * Access-Control-Request-Method) are answered here, and so is every other OPTIONS except those two's.
 */
export function corsPolicy(origins: readonly string[]) {
  return new Elysia({ name: 'cors-policy', seed: origins })
    .use(
      cors({
        origin: origins.includes('*') ? '*' : [...origins],
        credentials: false,
        preflight: false,
        methods: METHODS,
        allowedHeaders: ALLOWED_HEADERS,
        exposeHeaders: EXPOSED_HEADERS,
        maxAge: PREFLIGHT_MAX_AGE_S,
      }),
    )
    .onRequest(({ request, set }) => {
      if (request.method !== 'OPTIONS') return;
      const preflight = request.headers.has('access-control-request-method');
      if (!preflight && OWN_OPTIONS.test(new URL(request.url).pathname)) return;
      set.headers['access-control-max-age'] = String(PREFLIGHT_MAX_AGE_S);
      return new Response(null, { status: 204 });
    });
}

/** The CORS headers of an answer (not a preflight's) to a request from `origin` (its Origin header, null without one). */
export type CorsHeaders = (origin: string | null) => Readonly<Record<string, string>>;

/**
 * The headers `corsPolicy` gives an answer, for the routes that Bun serves itself (outside Elysia's
 * chain): the same policy, its tables built once. An origin in the list matches as sent, or by its host
 * (a listed `example.com` matches `https://example.com`), as in the plugin.
 */
export function corsHeaders(origins: readonly string[]): CorsHeaders {
  const fixed = {
    'access-control-expose-headers': EXPOSED_HEADERS.join(', '),
    'access-control-allow-headers': ALLOWED_HEADERS.join(', '),
    'access-control-allow-methods': METHODS.join(', '),
  };
  // No list at all: the plugin adds nothing of the origin's.
  if (origins.length === 0) {
    const none = Object.freeze(fixed);
    return () => none;
  }
  if (origins.includes('*')) {
    const any = Object.freeze({ ...fixed, vary: '*', 'access-control-allow-origin': '*' });
    return () => any;
  }
  const listed = new Set(origins);
  const refused = Object.freeze({ ...fixed, vary: 'Origin' });
  // One record per listed origin, made once: a caller may keep what it builds from one (see nativeRoute).
  const exact = new Map(origins.map((origin) => [origin, Object.freeze({ ...fixed, vary: 'Origin', 'access-control-allow-origin': origin })]));
  return (origin) => {
    if (origin === null || origin === '') return refused;
    const known = exact.get(origin);
    if (known) return known;
    const scheme = origin.indexOf('://');
    return scheme !== -1 && listed.has(origin.slice(scheme + 3)) ? { ...fixed, vary: 'Origin', 'access-control-allow-origin': origin } : refused;
  };
}
