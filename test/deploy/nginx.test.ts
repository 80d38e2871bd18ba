// deploy/nginx.conf in front of a real server: the Debian nginx, started as a child on 127.0.0.1 and
// a free port, with a configuration made from the sample by changing only addresses and files.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Subprocess } from 'bun';
import { selfSignedCertificate } from '../fixtures/certificate';
import { freePort } from '../fixtures/ports';
import { ManualClock, type Running, startServer } from '../helpers';

const sample = join(import.meta.dir, '..', '..', 'deploy', 'nginx.conf');
const nginx = Bun.which('nginx', { PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` });
const prefix = mkdtempSync(join(tmpdir(), 'switchboard-nginx-'));
let switchboard: Running;
let proxy: Subprocess<'ignore', 'pipe', 'pipe'> | undefined;
let base = '';
let ca = '';
/** Where the sample's own access log goes. */
const accessLog = join(prefix, 'switchboard.access.log');

/** Replaces `from` in `text`, failing loudly if the sample no longer has it. */
function change(text: string, from: string | RegExp, to: string): string {
  const changed = text.replace(from, to);
  if (changed === text) throw new Error(`deploy/nginx.conf no longer contains ${from}: update this test`);
  return changed;
}

/** The sample, aimed at the test's server, ports and certificate. */
async function configFrom(upstreamPort: number, httpsPort: number, httpPort: number): Promise<string> {
  let site = await Bun.file(sample).text();
  site = change(site, 'server 127.0.0.1:3478;', `server 127.0.0.1:${upstreamPort};`);
  site = change(site, /^\s*listen 80;$/m, `    listen 127.0.0.1:${httpPort};`);
  site = change(site, /^\s*listen \[::\]:80;\n/m, '');
  site = change(site, /^\s*listen 443 ssl http2;$/m, `    listen 127.0.0.1:${httpsPort} ssl http2;`);
  site = change(site, /^\s*listen \[::\]:443 ssl http2;\n/m, '');
  site = change(site, /ssl_certificate\s+\S+;/, `ssl_certificate ${prefix}/localhost-cert.pem;`);
  site = change(site, /ssl_certificate_key\s+\S+;/, `ssl_certificate_key ${prefix}/localhost-key.pem;`);
  site = change(site, /\/var\/log\/nginx\/switchboard\.access\.log/g, accessLog);
  const temp = (name: string) => `${name}_temp_path ${prefix}/temp/${name};`;
  return `daemon off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log info;
events { worker_connections 64; }
http {
  access_log ${prefix}/access.log;
  ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(temp).join('\n  ')}
  # As many servers have it: compression on, for event streams too. The sample must turn it off.
  gzip on;
  gzip_types text/event-stream application/json;
  # switchboard's own X-Accel-Buffering: no would unbuffer its streams whatever the configuration
  # says; ignore it, so that what is tested is the sample alone.
  proxy_ignore_headers X-Accel-Buffering;
${site}
}
`;
}

beforeAll(async () => {
  if (!nginx) throw new Error('nginx is not installed (bun run test installs it: apt-get install nginx)');
  chmodSync(prefix, 0o755);
  mkdirSync(join(prefix, 'temp'));
  ca = selfSignedCertificate(prefix).cert;
  // No pings: the only bytes on a stream are those the test causes.
  switchboard = startServer({}, { clock: new ManualClock() });

  // A port can be taken between finding it free and nginx binding it: try again then.
  for (let attempt = 1; !proxy; attempt++) {
    const httpsPort = freePort();
    await Bun.write(join(prefix, 'nginx.conf'), await configFrom(Number(new URL(switchboard.url).port), httpsPort, freePort()));
    const started = Bun.spawn([nginx, '-p', prefix, '-e', join(prefix, 'error.log'), '-c', join(prefix, 'nginx.conf')], { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' });
    const deadline = Date.now() + 10_000;
    while (started.exitCode === null && Date.now() < deadline) {
      const up = await fetch(`https://127.0.0.1:${httpsPort}/healthz`, { tls: { ca } }).then(
        (r) => r.ok,
        () => false,
      );
      if (up) {
        proxy = started;
        base = `https://127.0.0.1:${httpsPort}`;
        break;
      }
      await Bun.sleep(20);
    }
    if (proxy) break;
    started.kill('SIGKILL');
    await started.exited;
    if (attempt === 3) throw new Error(`nginx did not start:\n${await Bun.file(join(prefix, 'error.log')).text()}`);
  }
}, 30_000);

afterAll(async () => {
  if (proxy) {
    proxy.kill('SIGQUIT');
    await proxy.exited;
  }
  await switchboard?.stop();
  rmSync(prefix, { recursive: true, force: true });
});

/** Reads a response body chunk by chunk, keeping what has arrived. */
function reader(response: Response) {
  const chunks = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = '';
  return {
    get text() {
      return text;
    },
    /** Reads until `text` contains `wanted`; fails if the stream ends first or nothing comes within `ms`. */
    async until(wanted: string, ms = 5000): Promise<string> {
      const deadline = Date.now() + ms;
      while (!text.includes(wanted)) {
        const left = deadline - Date.now();
        const next = await Promise.race([chunks.read(), Bun.sleep(Math.max(0, left)).then(() => 'timeout' as const)]);
        if (next === 'timeout') throw new Error(`${JSON.stringify(wanted)} did not arrive within ${ms} ms; got ${JSON.stringify(text)}`);
        if (next.done) throw new Error(`the stream ended before ${JSON.stringify(wanted)}; got ${JSON.stringify(text)}`);
        text += decoder.decode(next.value, { stream: true });
      }
      return text;
    },
    cancel: () => chunks.cancel(),
  };
}

describe('deploy/nginx.conf', () => {
  test('passes each event through as soon as switchboard writes it, uncompressed, while the stream stays open', async () => {
    const post = (path: string, body?: unknown) => fetch(`${base}${path}`, { method: 'POST', body: body === undefined ? undefined : JSON.stringify(body), tls: { ca } });
    await post('/register/s/a');
    const stream = await fetch(`${base}/events/s/a`, { tls: { ca }, headers: { accept: 'text/event-stream', 'accept-encoding': 'gzip' } });
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toStartWith('text/event-stream');
    expect(stream.headers.get('content-encoding')).toBeNull();
    const events = reader(stream);
    // The opening lines come through before anything else is written.
    expect(await events.until('id: 0\n\n')).toBe('retry: 1000\n\nid: 0\n\n');

    // One small event, and then nothing more from the server: it must arrive on its own.
    await post('/register/s/b');
    const oneEvent = 'id: 1\ndata: {"type":"new-peer","senderId":"b"}\n\n';
    expect(await events.until(oneEvent)).toBe(`retry: 1000\n\nid: 0\n\n${oneEvent}`);

    // And the next one too, on the same open stream.
    await post('/message/s/b', { target: 'a', type: 'offer', payload: { type: 'offer', sdp: 'v=0' } });
    await events.until('"senderId":"b"}\n\nid: 2\ndata: {"type":"offer"');
    await events.cancel();
  });

  test('passes the API through, with a request id switchboard echoes', async () => {
    const res = await fetch(`${base}/register/other/p`, { method: 'POST', tls: { ca } });
    expect(res.status).toBe(200);
    expect((await res.json()).peerId).toBe('p');
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f]{32}$/);
    const tooBig = await fetch(`${base}/message/other/p`, { method: 'POST', body: 'x'.repeat(100 * 1024), tls: { ca } });
    expect(tooBig.status).toBe(413);
    expect((await tooBig.json()).error).toBe('payload_too_large');
  });

  test("its access log has each request's path, and no token from a query string or a header", async () => {
    const token = (await (await fetch(`${base}/register/logged/p`, { method: 'POST', tls: { ca } })).json()).token as string;
    const secret = 'a-token-in-a-query-string';
    const requests = [
      fetch(`${base}/iceServers?sessionId=logged&peerId=p&token=${token}`, { tls: { ca } }),
      fetch(`${base}/iceServers?sessionId=logged&peerId=p`, { tls: { ca }, headers: { authorization: `Bearer ${token}`, referer: `https://app.example/?token=${secret}` } }),
      fetch(`${base}/healthz?token=${secret}`, { tls: { ca } }),
    ];
    for (const res of await Promise.all(requests)) expect(res.status).toBe(200);
    // nginx writes a request's line once it has answered it: wait for all three.
    const deadline = Date.now() + 5000;
    let log = '';
    while ((log.match(/"GET \/iceServers HTTP\/[\d.]+" 200 |"GET \/healthz HTTP\/[\d.]+" 200 /g) ?? []).length < 3 && Date.now() < deadline) {
      await Bun.sleep(20);
      log = await Bun.file(accessLog).text();
    }
    expect(log).toContain('"GET /iceServers HTTP/');
    expect(log).toContain('"GET /healthz HTTP/');
    expect(log).not.toContain(token);
    expect(log).not.toContain(secret);
    expect(log).not.toContain('?');
  });

  test('redirects plain HTTP to HTTPS', async () => {
    const conf = await Bun.file(join(prefix, 'nginx.conf')).text();
    const httpPort = /listen 127\.0\.0\.1:(\d+);/.exec(conf)?.[1];
    const res = await fetch(`http://127.0.0.1:${httpPort}/events/s/a`, { redirect: 'manual' });
    expect(res.status).toBe(301);
    expect(res.headers.get('location')).toBe('https://127.0.0.1/events/s/a');
  });
});
