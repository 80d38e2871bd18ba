// The client library and the fleet view as the server serves them: /sdk/switchboard.js is one ES module
// of this server's version that a page on another origin may import; /sdk/switchboard.d.ts is the file
// in the repository; /fleet is a page with the same security headers as /.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pkg from '../../package.json';
import { CONTENT_SECURITY_POLICY } from '../../src/page/headers';
import { type Running, startServer } from '../helpers';

let server: Running;
let restricted: Running;
const dir = mkdtempSync(join(tmpdir(), 'switchboard-sdk-'));
beforeAll(() => {
  server = startServer();
  restricted = startServer({ corsOrigins: ['https://dashboard.example'] });
});
afterAll(async () => {
  await server.stop();
  await restricted.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('GET /sdk/switchboard.js', () => {
  test('an ES module of the server’s version, importable from any origin', async () => {
    const res = await fetch(`${server.url}/sdk/switchboard.js`, { headers: { origin: 'https://dashboard.example' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('cross-origin-resource-policy')).toBe('cross-origin');
    expect(res.headers.get('x-switchboard-version')).toBe(pkg.version);
    expect(res.headers.get('x-typescript-types')).toBe('/sdk/switchboard.d.ts');
    // Imported as a module, it has the API's names and the version.
    const file = join(dir, 'switchboard.js');
    writeFileSync(file, await res.text());
    const sdk = await import(file);
    expect(Object.keys(sdk).sort()).toEqual(['ApiError', 'SERVER_PEER', 'UnreachableError', 'connect', 'describeError', 'join', 'version']);
    expect(sdk.version).toBe(pkg.version);
    expect(sdk.SERVER_PEER).toBe('switchboard');
  });

  test('importable from any origin even where CORS_ORIGINS names only some for the API', async () => {
    const res = await fetch(`${restricted.url}/sdk/switchboard.js`, { headers: { origin: 'https://elsewhere.example' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
  });

  test('an unchanged library is answered 304 by its ETag', async () => {
    const first = await fetch(`${server.url}/sdk/switchboard.js`);
    const etag = first.headers.get('etag') ?? '';
    expect(etag).toStartWith(`"${pkg.version}-`);
    const again = await fetch(`${server.url}/sdk/switchboard.js`, { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect(again.headers.get('x-switchboard-version')).toBe(pkg.version);
  });
});

describe('GET /sdk/switchboard.d.ts', () => {
  test('the declarations in the repository, as TypeScript', async () => {
    const res = await fetch(`${server.url}/sdk/switchboard.d.ts`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/typescript; charset=utf-8');
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(await res.text()).toBe(readFileSync(new URL('../../src/client/sdk/switchboard.d.ts', import.meta.url), 'utf8'));
  });
});

describe('GET /fleet', () => {
  test('a page with the security headers, whose assets are served', async () => {
    const res = await fetch(`${server.url}/fleet`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    expect(res.headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
    const html = await res.text();
    expect(html).toContain('switchboard fleet');
    const assets = [...html.matchAll(/<(?:script|link)[^>]+(?:src|href)="\.?(\/chunk-[^"]+)"/g)].map((m) => m[1] as string);
    expect(assets.length).toBeGreaterThanOrEqual(2);
    for (const asset of assets) expect((await fetch(`${server.url}${asset}`)).status).toBe(200);
  });
});
