import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectForcedStop, expectGracefulStop } from './drain-scenario';
import { runToEnd, type ServerProcess, spawnServer } from './process-helpers';
import { ofType, openEvents } from './sse-client';

const root = join(import.meta.dir, '..');
// An empty directory with nothing but the executable: no node_modules, no sources, no client files.
const dir = mkdtempSync(join(tmpdir(), 'switchboard-binary-'));
const binary = join(dir, 'switchboard');
let server: ServerProcess;

beforeAll(async () => {
  const build = await runToEnd([process.execPath, 'run', 'build'], {}, root);
  if (build.code !== 0) throw new Error(`bun run build failed:\n${build.output}`);
  copyFileSync(join(root, 'dist', 'switchboard'), binary);
  server = await spawnServer([binary], { cwd: dir });
}, 120_000);

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('dist/switchboard from an empty directory', () => {
  test('is alone in its directory', () => {
    expect(readdirSync(dir)).toEqual(['switchboard']);
  });

  test('serves the client page and its script from inside the executable', async () => {
    const page = await fetch(`${server.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    const html = await page.text();
    const script = /<script[^>]+src="([^"]+)"/.exec(html)?.[1];
    expect(script).toBeDefined();
    const js = await fetch(new URL(script as string, server.url));
    expect(js.status).toBe(200);
    expect(await js.text()).toContain('/register/');
  });

  test('serves /iceServers and a stream', async () => {
    expect(await (await fetch(`${server.url}/iceServers`)).json()).toEqual({ urls: ['stun:stun.cloudflare.com:3478'] });
    await fetch(`${server.url}/register/bin/a`, { method: 'POST' });
    const stream = await openEvents(`${server.url}/events/bin/a`);
    await fetch(`${server.url}/register/bin/b`, { method: 'POST' });
    expect((await stream.next(ofType('new-peer'))).json).toEqual({ type: 'new-peer', senderId: 'b' });
    stream.close();
  });

  test('a bad setting exits 1 naming it', async () => {
    const { code, output } = await runToEnd([binary], { PORT: 'abc' }, dir);
    expect(code).toBe(1);
    expect(output).toContain('PORT="abc" is invalid');
  });

  test('--version prints the package version', async () => {
    const { output } = await runToEnd([binary, '--version'], {}, dir);
    expect(output.trim()).toBe((await Bun.file(join(root, 'package.json')).json()).version);
  });

  test('serves health, metrics and its OpenAPI document', async () => {
    expect(await (await fetch(`${server.url}/healthz`)).json()).toEqual({ status: 'ok' });
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    expect(await (await fetch(`${server.url}/metrics`)).text()).toContain('switchboard_build_info{version=');
    const doc = await (await fetch(`${server.url}/openapi.json`)).json();
    expect(Object.keys(doc.paths)).toContain('/message/{sessionId}/{peerId}');
    expect((await fetch(`${server.url}/docs`)).headers.get('content-type')).toContain('text/html');
  });

  test('SIGTERM: stops accepting, ends streams, answers the request in flight, exits 0', async () => {
    await expectGracefulStop(await spawnServer([binary], { cwd: dir }), 'SIGTERM');
  });

  test('a request still open at SHUTDOWN_TIMEOUT_MS is cut, and it exits 0', async () => {
    await expectForcedStop(await spawnServer([binary], { cwd: dir, env: { SHUTDOWN_TIMEOUT_MS: '200' } }));
  });
});
