import { Elysia, t } from 'elysia';
import { tokenHash, tokenMatches } from '../auth/tokens';
import { describe, TAGS } from '../docs/describe';
import { SignalError } from '../errors';
import { CONTENT_TYPE, type MetricsRegistry } from './exposition';

/** `GET /metrics` in the Prometheus text format; with a token set, only for `Authorization: Bearer <token>`. */
export const metricsRoutes = (registry: MetricsRegistry, token: string | undefined) => {
  // The whole header is compared, as digests of one length (see tokenMatches): neither where a guess
  // differs nor how long the token is shows in the time the answer takes.
  const expected = token === undefined ? undefined : tokenHash(`Bearer ${token}`);
  return new Elysia().get(
    '/metrics',
    ({ headers: { authorization }, set }) => {
      if (expected && !tokenMatches(authorization ?? '', expected)) {
        set.headers['www-authenticate'] = 'Bearer realm="metrics"';
        throw new SignalError('unauthorized', 'GET /metrics needs "Authorization: Bearer <METRICS_TOKEN>"');
      }
      return new Response(registry.expose(), { headers: { 'content-type': CONTENT_TYPE } });
    },
    {
      detail: describe({
        summary: 'Prometheus metrics',
        description: 'The Prometheus text exposition format. With METRICS_TOKEN set, send it as a bearer token.',
        tags: [TAGS.operations],
        answers: { 200: { description: 'the metrics', contentType: 'text/plain; version=0.0.4', schema: t.String() } },
        errors: ['unauthorized'],
      }),
    },
  );
};
