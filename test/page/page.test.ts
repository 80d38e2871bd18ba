import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import { CONTENT_SECURITY_POLICY } from '../../src/page/headers';
import { type Browser, launchChromium } from '../fixtures/chromium';
import { rawRequest } from '../fixtures/raw-http';
import { defaultConfig, type Running, req, startServer } from '../helpers';

let server: Running;
beforeAll(() => {
  server = startServer({ adminToken: 'admin-token-0123456789' });
});
afterAll(() => server.stop());

const expectSecurityHeaders = (headers: Headers) => {
  expect(headers.get('content-security-policy')).toBe(CONTENT_SECURITY_POLICY);
  expect(headers.get('x-content-type-options')).toBe('nosniff');
  expect(headers.get('referrer-policy')).toBe('no-referrer');
  expect(headers.get('x-frame-options')).toBe('DENY');
  expect(headers.get('cross-origin-opener-policy')).toBe('same-origin');
  expect(headers.get('permissions-policy')).toContain('camera=(self)');
};

/** Every script and stylesheet the page loads. */
const assetsOf = (html: string) => [...html.matchAll(/<(?:script|link)[^>]+(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string).filter((url) => !url.startsWith('data:'));

describe('the client page over a real listener', () => {
  test('GET / carries the security headers', async () => {
    const res = await fetch(`${server.url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expectSecurityHeaders(res.headers);
    expect(res.headers.get('strict-transport-security')).toBeNull();
  });

  test('so does every script and stylesheet of the bundle, with its own content type', async () => {
    const html = await (await fetch(`${server.url}/`)).text();
    const assets = assetsOf(html);
    expect(assets.some((a) => a.endsWith('.js'))).toBe(true);
    for (const asset of assets) {
      const res = await fetch(new URL(asset, `${server.url}/`));
      expect(res.status).toBe(200);
      expectSecurityHeaders(res.headers);
      expect(res.headers.get('content-type')).toMatch(asset.endsWith('.js') ? /^text\/javascript/ : /^text\/css/);
      expect(res.headers.get('cache-control')).toContain('immutable');
    }
  });

  test('an unchanged page is answered 304 by its ETag, headers included', async () => {
    const first = await fetch(`${server.url}/`);
    const etag = first.headers.get('etag') ?? '';
    expect(etag).toMatch(/^".+"$/);
    const again = await fetch(`${server.url}/`, { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expectSecurityHeaders(again.headers);
  });

  test.each([
    '/../package.json',
    '/../../../../etc/passwd',
    '/%2e%2e/%2e%2e/etc/passwd',
    '/..%2f..%2fpackage.json',
    '/%2e%2e%2fsrc%2fapp.ts',
    '/chunk-..%2f..%2fpackage.json',
    '/.%2e/.%2e/etc/passwd',
    '//etc/passwd',
    '/src/app.ts',
    '/index.html',
    '/main.ts',
    '/style.css',
    '/package.json',
    '/%00',
    '/..%5c..%5cpackage.json',
    '/%c0%ae%c0%ae/etc/passwd',
  ])('%s reaches no file', async (path) => {
    const { status, raw } = await rawRequest(Number(new URL(server.url).port), `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    expect([400, 404]).toContain(status);
    expect(raw).not.toContain('root:');
    expect(raw).not.toContain('"dependencies"');
    expect(raw).not.toContain('import ');
  });

  test('an unknown single-segment path is the usual JSON 404', async () => {
    const res = await fetch(`${server.url}/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: 'not_found', message: 'no route for GET /nope' });
  });
});

describe('the client page in-process', () => {
  test('app.handle serves it with the same headers; HSTS only when the server speaks TLS', async () => {
    const plain = await req(createApp(defaultConfig()).app, 'GET', '/');
    expectSecurityHeaders(plain.headers);
    const tls = await req(createApp(defaultConfig({ tlsCert: '/unused.pem', tlsKey: '/unused.key' })).app, 'GET', '/');
    expect(tls.headers.get('strict-transport-security')).toBe('max-age=31536000');
  });
});

describe('the client passes its Content-Security-Policy in Chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  }, 60_000);
  afterAll(() => browser?.close());

  // Recorded from the first line of every document, before the page's own scripts.
  const watch = `window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
    window.__failed = [];
    window.addEventListener('error', (e) => { if (e.target && e.target !== window) window.__failed.push(e.target.src || e.target.href); }, true);`;

  test('the page loads its bundle and does what the client does, without a single violation', async () => {
    const page = await browser.newPage();
    await page.beforeScripts(watch);
    await page.goto(`${server.url}/`);
    const result = await page.evaluate<Record<string, unknown>>(`(async () => {
      const loaded = [...document.scripts].map((s) => s.src).filter(Boolean);
      const sheets = document.styleSheets.length;
      const ice = await (await fetch('/iceServers')).json();
      const reg = await (await fetch('/register/csp/probe', { method: 'POST' })).json();
      const opened = await new Promise((resolve) => {
        const es = new EventSource('/events/csp/probe?token=' + reg.token);
        es.onopen = () => { es.close(); resolve(true); };
        es.onerror = () => { es.close(); resolve(false); };
      });
      const media = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
      const video = document.createElement('video');
      video.muted = true;
      video.srcObject = media;
      document.body.append(video);
      const pc = new RTCPeerConnection({ iceServers: [] });
      media.getTracks().forEach((t) => pc.addTrack(t, media));
      const offer = await pc.createOffer();
      pc.close();
      const blobVideo = document.createElement('video');
      blobVideo.src = URL.createObjectURL(new Blob([new Uint8Array(16)], { type: 'video/webm' }));
      const img = new Image();
      img.src = 'data:image/gif;base64,R0lGODlhAQABAAAAACw=';
      await new Promise((r) => setTimeout(r, 200));
      media.getTracks().forEach((t) => t.stop());
      return { loaded, sheets, ice: Array.isArray(ice.urls), opened, offer: offer.sdp.startsWith('v=0'), violations: window.__violations, failed: window.__failed };
    })()`);
    expect(result).toEqual({ loaded: [expect.stringMatching(/\/chunk-.+\.js$/)], sheets: 1, ice: true, opened: true, offer: true, violations: [], failed: [] });
  }, 30_000);

  test('and the policy is enforced: inline script and a foreign origin are refused and reported', async () => {
    const page = await browser.newPage();
    await page.beforeScripts(watch);
    await page.goto(`${server.url}/`);
    const result = await page.evaluate<{ inline: unknown; violations: string[]; fetched: boolean }>(`(async () => {
      const s = document.createElement('script');
      s.textContent = 'window.__inline = 1';
      document.body.append(s);
      const fetched = await fetch('http://127.0.0.2:9/').then(() => true, () => false);
      await new Promise((r) => setTimeout(r, 100));
      return { inline: window.__inline ?? null, violations: window.__violations, fetched };
    })()`);
    expect(result.inline).toBeNull();
    expect(result.fetched).toBe(false);
    expect(result.violations).toEqual(expect.arrayContaining([expect.stringMatching(/^script-src/), expect.stringMatching(/^connect-src/)]));
  }, 30_000);
});
