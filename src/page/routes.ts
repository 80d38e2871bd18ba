import { Type as t } from '@sinclair/typebox';
import { Elysia } from 'elysia';
import { describe, TAGS } from '../docs/describe';
import { SignalError } from '../errors';
import { type Asset, type HtmlImport, loadClientBundle } from './bundle';
import { securityHeaders } from './headers';

/**
 * `GET /` and the page's assets, with the security headers on each. The bundle is loaded on the first
 * request and kept. An asset is looked up by exact name in that map, never on the file system, so no
 * path can reach another file. Other single-segment paths answer the usual JSON 404.
 */
export const pageRoutes = (page: HtmlImport, options: { tls: boolean }) => {
  let bundle: Promise<Map<string, Asset>> | undefined;
  const headers = securityHeaders(options.tls);
  const serve = async (path: string, request: Request) => {
    bundle ??= loadClientBundle(page);
    const asset = (await bundle).get(path);
    if (!asset) throw new SignalError('not_found', `no route for GET ${path}`);
    const common = {
      ...headers,
      etag: asset.etag,
      'cache-control': asset.isPage ? 'no-cache' : 'public, max-age=31536000, immutable',
    };
    if (request.headers.get('if-none-match') === asset.etag) return new Response(null, { status: 304, headers: common });
    return new Response(asset.body, { headers: { ...common, 'content-type': asset.contentType } });
  };
  // Bun names every file of a bundle chunk-<hash>.<ext>, in an executable too: a narrower route than
  // `/:asset`, which would shadow other one-segment routes that Bun's router does not see (/docs).
  return new Elysia()
    .get('/', ({ request }) => serve('/', request), {
      detail: describe({
        summary: 'The browser test client',
        tags: [TAGS.client],
        answers: { 200: { description: 'an HTML page', contentType: 'text/html', schema: t.String() }, 304: { description: 'unchanged (If-None-Match)' } },
      }),
    })
    .get('/chunk-*', ({ path, request }) => serve(path, request), {
      detail: describe({
        summary: "A script or stylesheet of the client page's bundle",
        tags: [TAGS.client],
        answers: { 200: { description: 'the file, with a content-hashed name: cached for good' }, 304: { description: 'unchanged (If-None-Match)' } },
        errors: ['not_found'],
      }),
    });
};
