import { Type as t } from '@sinclair/typebox';
import { Elysia } from 'elysia';
import { version } from '../../package.json';
import { describe, TAGS } from '../docs/describe';
import { SignalError } from '../errors';
import { type Asset, type HtmlImport, loadClientBundle } from './bundle';
import { securityHeaders } from './headers';
import { sdkDeclarations, sdkScript } from './sdk-bundle' with { type: 'macro' };

/** The pages by route: the test client at `/`, the fleet view at `/fleet`. */
export type Pages = Record<'/' | '/fleet', HtmlImport>;

/** Headers of the client library's files: importable from any origin (no credentials ride on it), of this server's version. */
const SDK_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-expose-headers': 'X-Switchboard-Version, X-TypeScript-Types',
  'cross-origin-resource-policy': 'cross-origin',
  'x-content-type-options': 'nosniff',
  'x-switchboard-version': version,
  // Not content-hashed: a new server version serves a new library at the same URL.
  'cache-control': 'no-cache',
};

/** One file of the library, built when this module was transpiled (in an executable: at build time). */
function sdkFile(body: string, contentType: string): Asset {
  const bytes = new TextEncoder().encode(body);
  return { body: bytes, contentType, etag: `"${version}-${Bun.hash(bytes).toString(36)}"`, isPage: false };
}

/**
 * `GET /`, `GET /fleet` and their assets, with the security headers on each; and the client library,
 * `GET /sdk/switchboard.js` and `/sdk/switchboard.d.ts`. The bundles are loaded on the first request
 * and kept. An asset is looked up by exact name in that map, never on the file system, so no path can
 * reach another file. Other single-segment paths answer the usual JSON 404.
 */
export const pageRoutes = (pages: Pages, options: { tls: boolean }) => {
  let bundle: Promise<Map<string, Asset>> | undefined;
  const load = async () => {
    const all = new Map<string, Asset>();
    // Both pages share chunks (the library): one name is one content.
    for (const [at, page] of Object.entries(pages)) for (const [path, asset] of await loadClientBundle(page, at)) all.set(path, asset);
    return all;
  };
  const headers = securityHeaders(options.tls);
  const revalidated = (asset: Asset, request: Request, common: Record<string, string>) => {
    if (request.headers.get('if-none-match') === asset.etag) return new Response(null, { status: 304, headers: common });
    return new Response(asset.body, { headers: { ...common, 'content-type': asset.contentType } });
  };
  const serve = async (path: string, request: Request) => {
    bundle ??= load();
    const asset = (await bundle).get(path);
    if (!asset) throw new SignalError('not_found', `no route for GET ${path}`);
    const common = {
      ...headers,
      etag: asset.etag,
      'cache-control': asset.isPage ? 'no-cache' : 'public, max-age=31536000, immutable',
    };
    return revalidated(asset, request, common);
  };
  // Made on the first request for them: most servers are never asked.
  let script: Asset | undefined;
  let declarations: Asset | undefined;
  const scriptFile = () => (script ??= sdkFile(sdkScript(), 'text/javascript; charset=utf-8'));
  const declarationsFile = () => (declarations ??= sdkFile(sdkDeclarations(), 'application/typescript; charset=utf-8'));
  const page = (summary: string) =>
    describe({
      summary,
      tags: [TAGS.client],
      answers: { 200: { description: 'an HTML page', contentType: 'text/html', schema: t.String() }, 304: { description: 'unchanged (If-None-Match)' } },
    });
  // Bun names every file of a bundle chunk-<hash>.<ext>, in an executable too: a narrower route than
  // `/:asset`, which would shadow other one-segment routes that Bun's router does not see (/docs).
  return new Elysia()
    .get('/', ({ request }) => serve('/', request), { detail: page('The browser test client') })
    .get('/fleet', ({ request }) => serve('/fleet', request), { detail: page('The fleet view: many sessions in one tab (`?sessions=cam-1,cam-2`)') })
    .get('/chunk-*', ({ path, request }) => serve(path, request), {
      detail: describe({
        summary: "A script or stylesheet of the pages' bundles",
        tags: [TAGS.client],
        answers: { 200: { description: 'the file, with a content-hashed name: cached for good' }, 304: { description: 'unchanged (If-None-Match)' } },
        errors: ['not_found'],
      }),
    })
    .get('/sdk/switchboard.js', ({ request }) => revalidated(scriptFile(), request, { ...SDK_HEADERS, etag: scriptFile().etag, 'x-typescript-types': '/sdk/switchboard.d.ts' }), {
      detail: describe({
        summary: 'The client library (ES module), of this server’s version (X-Switchboard-Version)',
        tags: [TAGS.client],
        answers: {
          200: { description: 'JavaScript, importable from any origin', contentType: 'text/javascript', schema: t.String() },
          304: { description: 'unchanged (If-None-Match)' },
        },
      }),
    })
    .get('/sdk/switchboard.d.ts', ({ request }) => revalidated(declarationsFile(), request, { ...SDK_HEADERS, etag: declarationsFile().etag }), {
      detail: describe({
        summary: 'The client library’s TypeScript declarations',
        tags: [TAGS.client],
        answers: { 200: { description: 'TypeScript declarations', contentType: 'application/typescript', schema: t.String() }, 304: { description: 'unchanged (If-None-Match)' } },
      }),
    });
};
