import type { Collector, Exposition } from './exposition';

const METHODS = ['GET', 'POST', 'DELETE', 'OPTIONS', 'HEAD', 'PUT', 'PATCH', 'other'] as const;

function methodIndex(method: string): number {
  switch (method) {
    case 'GET':
      return 0;
    case 'POST':
      return 1;
    case 'DELETE':
      return 2;
    case 'OPTIONS':
      return 3;
    case 'HEAD':
      return 4;
    case 'PUT':
      return 5;
    case 'PATCH':
      return 6;
    default:
      return 7;
  }
}

/** The route label of a request no route matched: no path a client sends ever becomes a label. */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * HTTP responses by method, route template (`/message/:sessionId/:peerId`, never the path a client
 * sent) and status. Counting is two Map lookups with keys the router already holds and a number key.
 */
export class HttpMetrics implements Collector {
  private readonly byRoute = new Map<string, Map<number, number>>();

  record(method: string, route: string | undefined, status: number): void {
    const template = route || UNMATCHED_ROUTE;
    let counts = this.byRoute.get(template);
    if (!counts) {
      counts = new Map();
      this.byRoute.set(template, counts);
    }
    const key = status * METHODS.length + methodIndex(method);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }

  collect(out: Exposition): void {
    out.family('switchboard_http_responses_total', 'counter', 'HTTP responses by method, route template and status.');
    for (const [route, counts] of this.byRoute) {
      for (const [key, value] of counts) {
        const method = METHODS[key % METHODS.length] as string;
        const status = String(Math.floor(key / METHODS.length));
        out.sample('switchboard_http_responses_total', value, { method, route, status });
      }
    }
  }
}
