import { afterAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expectForcedStop, expectGracefulStop, logLines } from './drain-scenario';
import { selfSignedCertificate } from './fixtures/certificate';
import { runToEnd, spawnServer } from './process-helpers';

const entry = join(import.meta.dir, '..', 'src', 'index.ts');
const bun = process.execPath;
const dir = mkdtempSync(join(tmpdir(), 'switchboard-process-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('bun src/index.ts', () => {
  test('says where it listens, serves the API, and logs JSON lines', async () => {
    const server = await spawnServer([bun, entry]);
    try {
      expect(server.output()).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+ \(TLS off\)/);
      expect(await (await fetch(`${server.url}/iceServers`)).json()).toEqual({ urls: ['stun:stun.cloudflare.com:3478'] });
      await fetch(`${server.url}/register/s/a`, { method: 'POST', headers: { 'x-request-id': 'from-the-proxy' } });
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    } finally {
      expect(await server.stop('SIGTERM')).toBe(0);
    }
    const lines = logLines(server);
    expect(lines[0]).toMatchObject({ level: 'info', url: server.url, tls: false });
    expect(lines).toContainEqual(expect.objectContaining({ msg: 'request', requestId: 'from-the-proxy', route: '/register/:sessionId/:peerId', sessionId: 's', peerId: 'a' }));
    // Probes are logged at debug level only.
    expect(lines.filter((l) => l.route === '/healthz')).toEqual([]);
    for (const line of server.output().trim().split('\n')) expect(() => JSON.parse(line)).not.toThrow();
  });

  test('LOG_FORMAT=pretty and LOG_LEVEL=debug', async () => {
    const server = await spawnServer([bun, entry], { env: { LOG_FORMAT: 'pretty', LOG_LEVEL: 'debug' } });
    await fetch(`${server.url}/healthz`);
    expect(await server.stop()).toBe(0);
    expect(server.output()).toMatch(/^\S+Z INFO {2}switchboard \S+ listening on/m);
    expect(server.output()).toMatch(/^\S+Z DEBUG request requestId=\S+ method=GET route=\/healthz status=200$/m);
  });

  test('SIGTERM: stops accepting, ends streams, answers the request in flight, exits 0', async () => {
    await expectGracefulStop(await spawnServer([bun, entry]), 'SIGTERM');
  });

  test('SIGINT does the same', async () => {
    await expectGracefulStop(await spawnServer([bun, entry]), 'SIGINT');
  });

  test('a request still open at SHUTDOWN_TIMEOUT_MS is cut, and it exits 0', async () => {
    await expectForcedStop(await spawnServer([bun, entry], { env: { SHUTDOWN_TIMEOUT_MS: '200' } }));
  });

  test.each([
    [{ PORT: 'abc' }, /PORT="abc" is invalid/],
    [{ PING_INTERVAL_MS: '-5' }, /PING_INTERVAL_MS/],
    [{ LOG_FORMAT: 'xml' }, /LOG_FORMAT="xml" is invalid: Expected one of json, pretty/],
    [{ TLS_CERT: '/nonexistent.pem' }, /TLS_CERT and TLS_KEY/],
    [{ TLS_CERT: '/nonexistent.pem', TLS_KEY: '/nonexistent.key' }, /TLS_CERT=\/nonexistent.pem cannot be read/],
  ])('a bad setting %p exits 1 with a message naming it', async (env, message) => {
    const { code, output } = await runToEnd([bun, entry], { HOST: '127.0.0.1', PORT: '0', ...env });
    expect(code).toBe(1);
    expect(output).toMatch(message);
  });

  test('a taken port exits 1 and says so', async () => {
    const server = await spawnServer([bun, entry]);
    const port = new URL(server.url).port;
    const { code, output } = await runToEnd([bun, entry], { HOST: '127.0.0.1', PORT: port });
    await server.stop();
    expect(code).toBe(1);
    expect(output).toContain(`cannot listen on 127.0.0.1:${port}`);
  });

  test('--help and --version', async () => {
    const help = await runToEnd([bun, entry, '--help']);
    expect(help.code).toBe(0);
    expect(help.output).toContain('MAX_PEERS_PER_SESSION');
    const version = await runToEnd([bun, entry, '--version']);
    expect(version.output.trim()).toBe((await Bun.file(join(import.meta.dir, '..', 'package.json')).json()).version);
  });

  test('HTTPS on the same port with TLS_CERT and TLS_KEY', async () => {
    const { certPath: cert, keyPath: key } = selfSignedCertificate(dir);
    const server = await spawnServer([bun, entry, '--tls-cert', cert, '--tls-key', key]);
    try {
      expect(server.url).toStartWith('https://');
      expect(server.output()).toContain('(TLS on)');
      const ca = await Bun.file(cert).text();
      const res = await fetch(`${server.url}/iceServers`, { tls: { ca } });
      expect(res.status).toBe(200);
      await fetch(`${server.url}/register/s/a`, { method: 'POST', tls: { ca } });
      await fetch(`${server.url}/register/s/b`, { method: 'POST', tls: { ca } });
      const stream = await fetch(`${server.url}/events/s/a`, { tls: { ca } });
      const reader = stream.body!.getReader();
      let text = '';
      while (!text.includes('new-peer')) text += new TextDecoder().decode((await reader.read()).value);
      expect(text).toContain('{"type":"new-peer","senderId":"b"}');
      await reader.cancel();
      // Plain HTTP on the TLS port is not served.
      await expect(fetch(`${server.url.replace('https:', 'http:')}/iceServers`)).rejects.toThrow();
    } finally {
      await server.stop();
    }
  });
});
