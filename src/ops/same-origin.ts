import { Elysia } from 'elysia';

/** Drops the CORS headers the app's cors plugin put on the answer being made. */
function dropCors({ set }: { set: { headers: Record<string, unknown> } }): void {
  for (const name of Object.keys(set.headers)) if (name.startsWith('access-control-')) delete set.headers[name];
}

/**
 * For routes that servers call, never web pages (probes, scrapers, the admin API): their answers carry no
 * CORS headers, so that no page on another origin can read them, whatever CORS_ORIGINS says. `.use()` it
 * in the instance that holds those routes: it applies to that instance only. The app's cors plugin sets
 * its headers on every request first (and answers preflights itself); they are taken off before the
 * body is validated, so errors are answered without them too.
 */
export const sameOriginOnly = () => new Elysia().onTransform({ as: 'scoped' }, dropCors).mapResponse({ as: 'scoped' }, dropCors);
