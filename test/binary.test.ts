import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisClient } from 'bun';
import { RedisServer } from './cluster/redis-server';
import { compiledBuild } from './compiled-binary';
import { allowedSyscalls, traced, unitValues } from './deploy/sandbox';
import { expectForcedStop, expectGracefulStop } from './drain-scenario';
import { selfSignedCertificate } from './fixtures/certificate';
import { until } from './helpers';
import { runToEnd, type ServerProcess, spawnServer } from './process-helpers';
import { ofType, openEvents } from './sse-client';

const root = join(import.meta.dir, '..');
// An empty directory with nothing but the executable: no node_modules, no sources, no client files.
const dir = mkdtempSync(join(tmpdir(), 'switchboard-binary-'));
const binary = join(dir, 'switchboard');
let server: ServerProcess;
const strace = Bun.which('strace');
const analyze = Bun.which('systemd-analyze');
for (const [tool, found] of [
  ['systemd-analyze', analyze],
  ['strace', strace],
]) {
  if (!found) console.log(`${tool} is not installed: the system calls of the executable are not checked against deploy/switchboard.service`);
}

beforeAll(async () => {
  copyFileSync((await compiledBuild()).path, binary);
  server = await spawnServer([binary], { cwd: dir });
}, 120_000);

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A process's output as it comes; `until` waits for it to match (bounded by the test's timeout). */
function textOf(stream: ReadableStream<Uint8Array>) {
  let text = '';
  let wake: (() => void) | undefined;
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
      text += decoder.decode(chunk, { stream: true });
      wake?.();
    }
  })();
  return {
    text: () => text,
    async until(match: (text: string) => boolean): Promise<void> {
      while (!match(text)) await new Promise<void>((resolve) => (wake = resolve));
    },
  };
}

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
    // The page's script and the chunks it imports (the client library, shared with /fleet).
    let code = await js.text();
    for (const chunk of code.matchAll(/from\s*"(\/chunk-[^"]+)"/g)) code += await (await fetch(new URL(chunk[1] as string, server.url))).text();
    expect(code).toContain('/register/');
    for (const res of [page, js]) {
      expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    }
  });

  test('serves the client library, its declarations and the fleet view from inside the executable', async () => {
    const version = (await Bun.file(join(root, 'package.json')).json()).version;
    const sdk = await fetch(`${server.url}/sdk/switchboard.js`);
    expect(sdk.status).toBe(200);
    expect(sdk.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(sdk.headers.get('x-switchboard-version')).toBe(version);
    const js = await sdk.text();
    expect(js).toContain(`"${version}"`);
    expect(js).toMatch(/export\s*\{[^}]*\bjoin\b/);
    const declarations = await fetch(`${server.url}/sdk/switchboard.d.ts`);
    expect(await declarations.text()).toBe(await Bun.file(join(root, 'src/client/sdk/switchboard.d.ts')).text());
    const fleet = await fetch(`${server.url}/fleet`);
    expect(fleet.status).toBe(200);
    const script = /<script[^>]+src="([^"]+)"/.exec(await fleet.text())?.[1];
    expect((await fetch(new URL(script as string, `${server.url}/fleet`))).status).toBe(200);
  });

  test('with TLS_CERT and TLS_KEY it speaks HTTP/2: an event stream over h2 carries events and stays open (curl --http2 -N)', async () => {
    const { certPath: cert, keyPath: key } = selfSignedCertificate(join(dir, '..'), dir.split('/').at(-1));
    const own = await spawnServer([binary], { cwd: dir, env: { TLS_CERT: cert, TLS_KEY: key, PING_INTERVAL_MS: '200' } });
    const tls = { rejectUnauthorized: false };
    expect((await fetch(`${own.url}/register/h2/a`, { method: 'POST', tls })).status).toBe(200);
    const curl = Bun.spawn(['curl', '-sS', '-k', '--http2', '-N', '-v', `${own.url}/events/h2/a`], { stdout: 'pipe', stderr: 'pipe' });
    try {
      const err = textOf(curl.stderr);
      const out = textOf(curl.stdout);
      await err.until((text) => text.includes('< HTTP/2 200'));
      await fetch(`${own.url}/register/h2/b`, { method: 'POST', tls });
      await out.until((text) => text.includes('"new-peer"'));
      // A message over h2 too: Bun's own router answers POST /message there as over HTTP/1.1.
      const post = Bun.spawn(['curl', '-sS', '-k', '--http2', '-i', '-X', 'POST', '-d', '{"type":"offer","target":"a","payload":{"sdp":"v=0"}}', `${own.url}/message/h2/b`], {
        stdout: 'pipe',
      });
      const answer = await new Response(post.stdout).text();
      expect(answer).toStartWith('HTTP/2 200');
      expect(answer.toLowerCase()).toContain('access-control-allow-origin: *');
      expect(answer).toEndWith('{"message":"Message sent"}');
      await out.until((text) => text.includes('"offer"') && text.includes('"senderId":"b"'));
      // Pings keep coming on the same stream: it stays open.
      await out.until((text) => text.split('"ping"').length > 3);
      expect(err.text()).toContain('ALPN: server accepted h2');
      expect(curl.exitCode).toBeNull();
    } finally {
      curl.kill();
      await own.stop();
      rmSync(cert, { force: true });
      rmSync(key, { force: true });
    }
  }, 30_000);

  test('serves /iceServers and a stream', async () => {
    expect(await (await fetch(`${server.url}/iceServers`)).json()).toEqual({ urls: ['stun:stun.cloudflare.com:3478'] });
    await fetch(`${server.url}/register/bin/a`, { method: 'POST' });
    const stream = await openEvents(`${server.url}/events/bin/a`);
    await fetch(`${server.url}/register/bin/b`, { method: 'POST' });
    expect((await stream.next(ofType('new-peer'))).json).toEqual({ type: 'new-peer', senderId: 'b' });
    stream.close();
  });

  test('was compiled twice, the second time with the order of the functions the first one ran in its starts (deploy/build.ts)', async () => {
    const { output } = await compiledBuild();
    expect(output).not.toContain('could not be written down');
    expect(output.match(/compile\s+\S*switchboard/g)?.length).toBe(2);
  });

  test('starts with the optimizing JIT held back, and compiles what runs often once it listens', async () => {
    // JavaScriptCore's report of each function its optimizing tiers compile.
    const compiled = (text: string) => text.match(/Optimized .* using (DFG|FTL)/g)?.length ?? 0;
    const reporting = await spawnServer([binary], { cwd: dir, env: { BUN_JSC_reportDFGCompileTimes: 'true' } });
    try {
      // A plain `bun build --compile` of the server compiles some sixteen functions by then (TypeBox's checks, Elysia's routes).
      expect(compiled(reporting.output())).toBe(0);
      for (let i = 0; i < 400 && compiled(reporting.output()) === 0; i++) expect((await fetch(`${reporting.url}/healthz`)).status).toBe(200);
      expect(compiled(reporting.output())).toBeGreaterThan(0);
    } finally {
      await reporting.stop();
    }
  }, 30_000);

  test("gives back the start's memory a second after it listens, and goes on serving", async () => {
    const trimmed = await spawnServer([binary], { cwd: dir, env: { LOG_LEVEL: 'debug' } });
    try {
      expect((await fetch(`${trimmed.url}/healthz`)).status).toBe(200);
      await until(() => trimmed.output().includes("the start's memory released"), 'the line of the release');
      const line = JSON.parse(
        trimmed
          .output()
          .split('\n')
          .find((l) => l.includes("the start's memory released")) ?? '{}',
      );
      // Measured: 2.73 → 1.75 MB, the same in every start (a full collection alone frees next to nothing). The
      // process's anonymous memory falls by about 1 MB too, but when its allocator returns the pages is its
      // own affair: that is measured by bench/binary.ts, not held here.
      expect(line.heapBytesAfter).toBeLessThan(line.heapBytesBefore * 0.8);
      // What ran before is compiled again where it runs next: the routes, a stream and its events.
      expect((await fetch(`${trimmed.url}/healthz`)).status).toBe(200);
      await fetch(`${trimmed.url}/register/after-trim/cam`, { method: 'POST' });
      const stream = await openEvents(`${trimmed.url}/events/after-trim/cam`);
      try {
        await fetch(`${trimmed.url}/register/after-trim/viewer`, { method: 'POST' });
        expect((await stream.next(ofType('new-peer'))).json).toEqual({ type: 'new-peer', senderId: 'viewer' });
      } finally {
        stream.close();
      }
    } finally {
      await trimmed.stop();
    }
  }, 30_000);
  test('reads no .env and runs no bunfig.toml preload from the directory it is started in', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'switchboard-cwd-'));
    const marker = join(cwd, 'preloaded');
    try {
      writeFileSync(join(cwd, 'bunfig.toml'), 'preload = ["./preload.js"]\n');
      writeFileSync(join(cwd, 'preload.js'), `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran');\n`);
      writeFileSync(join(cwd, '.env'), 'ICE_URLS=stun:dotenv.example:3478\n');
      const started = await spawnServer([binary], { cwd });
      try {
        // A preload would have run before the server listened.
        expect(existsSync(marker)).toBe(false);
        expect(await (await fetch(`${started.url}/iceServers`)).json()).toEqual({ urls: ['stun:stun.cloudflare.com:3478'] });
      } finally {
        await started.stop();
      }
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  }, 30_000);

  test("with REDIS_URL it loads the cluster's modules (a one-process start leaves them out) and serves from Redis", async () => {
    const redis = await RedisServer.start();
    const clustered = await spawnServer([binary], { cwd: dir, env: { REDIS_URL: redis.url } });
    try {
      expect(await (await fetch(`${clustered.url}/readyz`)).json()).toEqual({ status: 'ready', checks: { redis: 'ok' } });
      expect((await fetch(`${clustered.url}/register/clustered/cam`, { method: 'POST' })).status).toBe(200);
      const client = new RedisClient(redis.url);
      try {
        expect(await client.send('DBSIZE', [])).toBeGreaterThan(0);
      } finally {
        client.close();
      }
    } finally {
      await clustered.stop();
      await redis.dispose();
    }
  }, 30_000);

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

  test("serves the documentation viewer's files from inside the executable", async () => {
    const page = await fetch(`${server.url}/docs`);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await page.text();
    expect(html).not.toContain('://');
    const files = [...html.matchAll(/(?:src|href)="(\/docs\/assets\/[^"]+)"/g)].map((m) => m[1] as string);
    expect(files).toHaveLength(3);
    for (const file of files) {
      const res = await fetch(`${server.url}${file}`);
      expect(res.status).toBe(200);
      const body = await res.text();
      expect(body.length).toBeGreaterThan(100);
      if (file.endsWith('swagger-ui-bundle.js')) expect(body).toContain('SwaggerUIBundle');
    }
  });

  test('SIGTERM: stops accepting, ends streams, answers the request in flight, exits 0', async () => {
    await expectGracefulStop(await spawnServer([binary], { cwd: dir }), 'SIGTERM');
  });

  test('a request still open at SHUTDOWN_TIMEOUT_MS is cut, and it exits 0', async () => {
    await expectForcedStop(await spawnServer([binary], { cwd: dir, env: { SHUTDOWN_TIMEOUT_MS: '200' } }));
  });

  test.skipIf(!strace || !analyze)(
    'makes only the system calls and sockets that deploy/switchboard.service allows',
    async () => {
      const trace = join(dir, '..', `${dir.split('/').at(-1)}.strace`);
      const own = await spawnServer([strace as string, '-f', '-qq', '-o', trace, binary], { cwd: dir });
      try {
        const { url } = own;
        await fetch(`${url}/register/s/a`, { method: 'POST' });
        await fetch(`${url}/register/s/b`, { method: 'POST' });
        const stream = await openEvents(`${url}/events/s/b`);
        await fetch(`${url}/message/s/a`, { method: 'POST', body: JSON.stringify({ target: 'b', type: 'offer', payload: { sdp: 'v=0' } }) });
        await stream.next(ofType('offer'));
        for (const path of ['/', '/metrics', '/openapi.json', '/docs', '/docs/assets/swagger-ui-bundle.js', '/readyz', '/iceServers'])
          await (await fetch(`${url}${path}`)).arrayBuffer();
        // Signal the server itself (strace's child), so that it drains as it would under systemd.
        const [child] = (await Bun.file(`/proc/${own.proc.pid}/task/${own.proc.pid}/children`).text()).trim().split(/\s+/).map(Number);
        if (!child) throw new Error('no traced process');
        process.kill(child, 'SIGTERM');
        await stream.ended;
        expect(await own.proc.exited).toBe(0);
        const { syscalls, families } = traced(await Bun.file(trace).text());
        expect(syscalls.size).toBeGreaterThan(20);
        const allowed = await allowedSyscalls(analyze as string);
        expect([...syscalls].filter((call) => !allowed.has(call))).toEqual([]);
        const permitted = (await unitValues('RestrictAddressFamilies')).join(' ').split(/\s+/);
        expect([...families].filter((family) => !permitted.includes(family))).toEqual([]);
      } finally {
        if (own.proc.exitCode === null) own.proc.kill('SIGKILL');
        rmSync(trace, { force: true });
      }
    },
    60_000,
  );
});
