// Cross-origin access, for browser clients served from elsewhere (a dashboard, a WHEP player page).
import { cors } from '@elysiajs/cors';
import { Elysia } from 'elysia';

/** Seconds a browser may keep a preflight's answer. */
const PREFLIGHT_MAX_AGE_S = 600;

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
        methods: ['GET', 'POST', 'PATCH', 'DELETE', 'OPTIONS'],
        allowedHeaders: ['Content-Type', 'Authorization', 'Last-Event-ID', 'If-Match'],
        exposeHeaders: ['Retry-After', 'X-Request-Id', 'Location', 'ETag', 'Link', 'Accept-Patch', 'Accept-Post'],
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
