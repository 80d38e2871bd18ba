import { timingSafeEqual } from 'node:crypto';
import { Elysia, t } from 'elysia';
import { describe, TAGS } from '../docs/describe';
import { SignalError } from '../errors';
import { CONTENT_TYPE, type MetricsRegistry } from './exposition';

/** Compares in constant time, so that the answer's timing tells nothing about the token. */
function sameToken(given: string, expected: Buffer): boolean {
  const bytes = Buffer.from(given);
  return bytes.length === expected.length && timingSafeEqual(bytes, expected);
}

/** `GET /metrics` in the Prometheus text format; with a token set, only for `Authorization: Bearer <token>`. */
export const metricsRoutes = (registry: MetricsRegistry, token: string | undefined) => {
  const expected = token === undefined ? undefined : Buffer.from(`Bearer ${token}`);
  return new Elysia().get(
    '/metrics',
    ({ headers: { authorization }, set }) => {
      if (expected && !sameToken(authorization ?? '', expected)) {
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
