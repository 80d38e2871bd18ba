import { describe, expect, test } from 'bun:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import pkg from '../../package.json';
import { createApp } from '../../src/app';
import { ERROR_SCHEMA_REF } from '../../src/docs/describe';
import { errorStatus } from '../../src/errors';
import { defaultConfig, req } from '../helpers';

interface Operation {
  summary?: string;
  tags?: string[];
  parameters?: { name: string; in: string }[];
  requestBody?: { content: Record<string, { schema: unknown }> };
  responses: Record<string, { description: string; content?: Record<string, { schema: Record<string, unknown> }> }>;
}
type Doc = { openapi: string; info: { version: string }; paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, unknown> } };

const { app } = createApp(defaultConfig());
const load = async () => (await req(app, 'GET', '/openapi.json')).body as Doc;
/** `/events/:sessionId/:peerId` as OpenAPI writes it: `/events/{sessionId}/{peerId}`. */
const openApiPath = (path: string) => path.replace(/:([^/]+)/g, '{$1}');

describe('GET /openapi.json', () => {
  test('is a valid OpenAPI 3.1 document whose references all resolve', async () => {
    const doc = await load();
    expect(doc.openapi).toStartWith('3.1');
    expect(doc.info.version).toBe(pkg.version);
    const validator = new Validator();
    const result = await validator.validate(doc);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(() => validator.resolveRefs()).not.toThrow();
  });

  test('documents every route the app serves, with a summary, a tag and its responses', async () => {
    const doc = await load();
    // CORS answers OPTIONS on every path; that is not part of the API, nor are the 405 answers of WHIP
    // and WHEP to the methods they do not take (hidden). WHIP's and WHEP's own OPTIONS are.
    const hidden = (route: (typeof app.routes)[number]) => (route.hooks as { detail?: { hide?: boolean } }).detail?.hide === true;
    const routes = app.routes.filter((route) => (route.method !== 'OPTIONS' || /^\/wh[ie]p\/:sessionId$/.test(route.path)) && !hidden(route));
    expect(routes.length).toBeGreaterThanOrEqual(11);
    for (const route of routes) {
      const operation = doc.paths[openApiPath(route.path)]?.[route.method.toLowerCase()];
      expect({ route: `${route.method} ${route.path}`, documented: operation !== undefined }).toEqual({ route: `${route.method} ${route.path}`, documented: true });
      expect(operation?.summary).toBeTruthy();
      expect(operation?.tags?.length).toBeGreaterThan(0);
      // A success: a 2xx, or 101 for the WebSocket upgrade.
      expect(Object.keys(operation?.responses ?? {}).some((status) => status.startsWith('2') || status === '101')).toBe(true);
    }
    // And the page Bun serves itself, outside the router.
    expect(doc.paths['/']?.get?.summary).toBeTruthy();
  });

  test('every error response is the one error envelope, under the status of its codes', async () => {
    const doc = await load();
    let errors = 0;
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        for (const [status, response] of Object.entries(operation.responses)) {
          if (Number(status) < 400 || (path === '/readyz' && status === '503')) continue;
          errors++;
          expect({ at: `${method} ${path} ${status}`, schema: response.content?.['application/json']?.schema }).toEqual({
            at: `${method} ${path} ${status}`,
            schema: { $ref: ERROR_SCHEMA_REF },
          });
          for (const code of response.description.replace('error: ', '').split(', ')) expect(String(errorStatus[code as keyof typeof errorStatus])).toBe(status);
        }
      }
    }
    expect(errors).toBeGreaterThan(10);
    expect(doc.paths['/message/{sessionId}/{peerId}']?.post?.responses['429']?.description).toBe('error: queue_full, too_many_candidates, rate_limited');
  });

  test('describes the event stream and the shape of each of its events', async () => {
    const doc = await load();
    const events = doc.paths['/events/{sessionId}/{peerId}']?.get;
    expect(events?.responses['200']?.content?.['text/event-stream']?.schema).toEqual({ $ref: '#/components/schemas/StreamEvent' });
    expect(events?.parameters?.map((p) => `${p.in} ${p.name}`)).toEqual(expect.arrayContaining(['path sessionId', 'path peerId', 'query lastEventId', 'header last-event-id']));
    for (const name of ['PingEvent', 'NewPeerEvent', 'PeerLeftEvent', 'SessionClosedEvent', 'MessageEvent', 'StreamEvent', 'Error'])
      expect(doc.components.schemas[name]).toBeDefined();
    expect(doc.components.schemas.NewPeerEvent).toMatchObject({ properties: { type: { const: 'new-peer' } }, required: ['type', 'senderId'] });
  });

  test("documents POST /message's body as the JSON it reads, whatever the content type", async () => {
    const body = (await load()).paths['/message/{sessionId}/{peerId}']?.post?.requestBody;
    expect(Object.keys(body?.content ?? {})).toEqual(['application/json', 'text/plain']);
    // A single body, or a batch of them.
    const schema = body?.content['application/json']?.schema as { anyOf?: unknown[] } | undefined;
    const [single, batch] = schema?.anyOf ?? [];
    expect(single).toMatchObject({ required: ['type'], properties: { type: { maxLength: 64 } } });
    expect(batch).toMatchObject({ type: 'array', minItems: 1, maxItems: 32, items: { required: ['type'] } });
  });
});

describe('GET /docs', () => {
  test('is a page whose viewer, from this server, loads the document', async () => {
    const res = await app.handle(new Request('http://localhost/docs'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    const html = await res.text();
    expect(html).not.toContain('://');
    expect(html).toContain('<script src="/docs/assets/start.js"></script>');
    expect(await (await app.handle(new Request('http://localhost/docs/assets/start.js'))).text()).toContain('url: "/openapi.json"');
  });
});
