import { Elysia, t } from 'elysia';
import { describe, TAGS } from '../docs/describe';
import type { Readiness } from './readiness';

export const Alive = t.Object({ status: t.Literal('ok') }, { description: 'The process serves requests' });

export const ReadinessBody = t.Object(
  {
    status: t.Union([t.Literal('ready'), t.Literal('draining'), t.Literal('not_ready')]),
    checks: t.Record(t.String(), t.Union([t.Literal('ok'), t.Literal('failing')]), { description: 'each configured backend by name' }),
  },
  { description: 'Whether this instance should be sent work' },
);

const ALIVE = { status: 'ok' } as const;

/** `GET /healthz` (the process is alive) and `GET /readyz` (it takes work), for probes and load balancers. */
export const healthRoutes = (readiness: Readiness) =>
  new Elysia()
    .get('/healthz', () => ALIVE, {
      detail: describe({
        summary: 'Liveness',
        description: 'Answers while the process serves requests; restart it if this fails.',
        tags: [TAGS.operations],
        answers: { 200: { description: 'alive', schema: Alive } },
      }),
    })
    .get(
      '/readyz',
      async ({ set }) => {
        const report = await readiness.report();
        if (report.status !== 'ready') set.status = 503;
        return report;
      },
      {
        detail: describe({
          summary: 'Readiness',
          description: 'Whether to send this instance work: 503 while it drains (shutting down) or while a configured backend is unreachable.',
          tags: [TAGS.operations],
          answers: {
            200: { description: 'ready', schema: ReadinessBody },
            503: { description: 'draining, or a backend check is failing', schema: ReadinessBody },
          },
        }),
      },
    );
