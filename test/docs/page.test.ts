// /docs in a real Chromium: the viewer comes from this server, renders the document, and breaks none
// of the page's Content-Security-Policy.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { DOCS_CONTENT_SECURITY_POLICY } from '../../src/docs/page';
import { type Browser, launchChromium } from '../fixtures/chromium';
import { type Running, startServer } from '../helpers';

let server: Running;
let browser: Browser;
beforeAll(async () => {
  server = startServer();
  browser = await launchChromium();
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

/** The scripts and stylesheets a page names. */
const assetsOf = (html: string) => [...html.matchAll(/<(?:script|link)[^>]+(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string);

describe('GET /docs', () => {
  test('names only files of this origin, each served with the policy, nosniff and an ETag', async () => {
    const res = await fetch(`${server.url}/docs`);
    expect(res.headers.get('content-security-policy')).toBe(DOCS_CONTENT_SECURITY_POLICY);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await res.text();
    expect(html).not.toContain('<script>');
    const assets = assetsOf(html);
    expect(assets).toHaveLength(3);
    for (const asset of assets) {
      expect(asset).toStartWith('/docs/assets/');
      const file = await fetch(`${server.url}${asset}`);
      expect(file.status).toBe(200);
      expect(file.headers.get('content-type')).toMatch(asset.endsWith('.css') ? /^text\/css/ : /^text\/javascript/);
      expect(file.headers.get('content-security-policy')).toBe(DOCS_CONTENT_SECURITY_POLICY);
      expect(file.headers.get('x-content-type-options')).toBe('nosniff');
      const etag = file.headers.get('etag') ?? '';
      expect(etag).toMatch(/^"\w+"$/);
      expect((await file.arrayBuffer()).byteLength).toBeGreaterThan(100);
      expect((await fetch(`${server.url}${asset}`, { headers: { 'if-none-match': etag } })).status).toBe(304);
    }
  });

  test('any other file name is a 404, and no path reaches the file system', async () => {
    for (const path of ['/docs/assets/package.json', '/docs/assets/..%2F..%2Fpackage.json', '/docs/assets/__proto__', '/docs/assets/index.html']) {
      const res = await fetch(`${server.url}${path}`);
      expect(res.status).toBe(404);
      expect((await res.json()).error).toBe('not_found');
    }
  });

  test('in Chromium: the viewer renders every route of the document, without a single violation or failed load', async () => {
    const page = await browser.newPage();
    await page.beforeScripts(`window.__violations = [];
      document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
      window.__failed = [];
      window.addEventListener('error', (e) => { window.__failed.push(e.target && e.target !== window ? (e.target.src || e.target.href) : String(e.message)); }, true);`);
    await page.goto(`${server.url}/docs`);
    const result = await page.evaluate<{ title: string; operations: number; violations: string[]; failed: string[] }>(`(async () => {
      const deadline = Date.now() + 15000;
      while (document.querySelectorAll('.opblock').length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      return {
        title: document.querySelector('.swagger-ui .info .title')?.textContent ?? '',
        operations: document.querySelectorAll('.opblock').length,
        violations: window.__violations,
        failed: window.__failed,
      };
    })()`);
    const document = await (await fetch(`${server.url}/openapi.json`)).json();
    const operations = Object.values(document.paths as Record<string, object>).reduce((n, item) => n + Object.keys(item).length, 0);
    expect(result.title).toStartWith('switchboard');
    expect(result.operations).toBe(operations);
    expect(result.violations).toEqual([]);
    expect(result.failed).toEqual([]);
  }, 30_000);
});
