// switchboard over TLS: HTTP/2 beside HTTP/1.1, both on the one HTTPS port (ALPN chooses), as src/index.ts
// serves it with TLS_CERT and TLS_KEY (the tests' self-signed P-256 certificate, which the clients trust).
//
//   bun bench/tls.ts            # about 45 s
//   bun bench/tls.ts --smoke    # a few seconds
//
//   relay          100 pairs (receiver's stream, sender's POSTs), the POSTs from nghttp2's h2load (Debian's
//                  nghttp2-client): `h2load` speaks HTTP/2 (8 streams in flight on each of 100 connections),
//                  `h2load --h1` HTTP/1.1 (8 requests pipelined on each of 100 connections), every client
//                  cycling over the 100 senders' paths with the same 257-byte ICE candidate body (h2load sends
//                  one body). The receivers' 100 streams are HTTP/1.1 over TLS in both (Bun's fetch), so that
//                  only the senders' protocol differs. Messages the receivers read per second, after the first
//                  second, and the server's CPU time per message.
//   session setup  the flow of bench/session-setup.ts (device and viewer register, open their streams, offer,
//                  answer, 4 + 4 candidates, leave), 50 in flight. HTTP/2: each peer has one connection
//                  (node:http2's client in Bun) that carries its stream and its requests, as a browser does.
//                  HTTP/1.1: Bun's fetch, each stream on its own connection and the requests on fetch's pool of
//                  keep-alive connections. The two clients differ; the server's CPU time per session is the
//                  figure to compare.
// The server is pinned to CPU 0 and the load (this process, h2load) to CPU 1 when bench/index.ts pins them.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { spawn } from 'bun';
import { type Certificate, selfSignedCertificate } from '../test/fixtures/certificate';
import { cpuSeconds, pinLoad, type ServerProcess, startServer } from './process';
import { ANSWER } from './session-setup';
import { iceCandidate, sdpOffer } from './signal-payloads';
import { quantile } from './stats';
import { formatRows, type Row } from './table';

type Protocol = 'HTTP/1.1' | 'HTTP/2';

interface Plan {
  pairs: number;
  window: number;
  relaySeconds: number;
  sessions: number;
  inFlight: number;
  /** No new session starts after this long. */
  budgetMs: number;
}

const FULL: Plan = { pairs: 100, window: 8, relaySeconds: 5, sessions: 3000, inFlight: 50, budgetMs: 8000 };
const SMOKE: Plan = { pairs: 4, window: 4, relaySeconds: 1, sessions: 40, inFlight: 8, budgetMs: 2000 };

const here = import.meta.dir;
/** What the clients trust: the certificate made for the run. */
const trusted = { ca: '' };

async function startTls(files: Certificate): Promise<ServerProcess> {
  const server = await startServer('switchboard (TLS)', [process.execPath, join(here, 'servers/switchboard.ts')], {
    pin: true,
    env: { ...process.env, TLS_CERT: files.certPath, TLS_KEY: files.keyPath },
  });
  return { ...server, base: server.base.replace('http:', 'https:') };
}

/** Counts the relayed messages (the ICE candidates) an SSE stream delivers; a marker split across chunks is still counted once. */
async function countingStream(url: string, signal: AbortSignal, onMessage: () => void): Promise<void> {
  const res = await fetch(url, { signal, tls: trusted });
  if (!res.ok || !res.body) throw new Error(`GET ${url}: ${res.status}`);
  const marker = '"ice-candidate"';
  void (async () => {
    let tail = '';
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        const text = tail + decoder.decode(chunk, { stream: true });
        for (let at = text.indexOf(marker); at >= 0; at = text.indexOf(marker, at + marker.length)) onMessage();
        tail = text.slice(-(marker.length - 1));
      }
    } catch {
      // Aborted at the end.
    }
  })();
}

async function post(base: string, path: string, body = ''): Promise<void> {
  const res = await fetch(`${base}${path}`, { method: 'POST', body, tls: trusted });
  if (!res.ok) throw new Error(`POST ${path}: ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
}

interface RelayFigures {
  rate: number;
  usPerMessage: number;
  serverCpu: number;
  loadCpu: number;
  answered: string;
}

/** h2load's POSTs to the pairs' senders while the receivers' streams count what arrives. */
async function relay(protocol: Protocol, files: Certificate, plan: Plan, dir: string): Promise<RelayFigures> {
  const server = await startTls(files);
  const abort = new AbortController();
  try {
    let delivered = 0;
    for (let i = 0; i < plan.pairs; i++) {
      await post(server.base, `/register/t${i}/r`);
      await countingStream(`${server.base}/events/t${i}/r`, abort.signal, () => delivered++);
      await post(server.base, `/register/t${i}/s`);
    }
    const body = join(dir, 'body.json');
    writeFileSync(body, JSON.stringify({ type: 'ice-candidate', target: 'r', payload: iceCandidate(1) }));
    const uris = join(dir, 'uris.txt');
    writeFileSync(uris, `${Array.from({ length: plan.pairs }, (_, i) => `${server.base}/message/t${i}/s`).join('\n')}\n`);
    const args = ['h2load', '-D', String(plan.relaySeconds + 1), '-c', String(plan.pairs), '-m', String(plan.window), '-d', body, '-H', 'content-type: text/plain', '-i', uris];
    if (protocol === 'HTTP/1.1') args.push('--h1');
    const load = spawn(args, { stdout: 'pipe', stderr: 'pipe' });
    const output = new Response(load.stdout).text();
    // The first second (connections, TLS handshakes, the JIT) is left out.
    await Bun.sleep(1000);
    const [from, serverFrom, loadFrom, start] = [delivered, cpuSeconds(server.pid), process.cpuUsage(), performance.now()];
    await load.exited;
    const seconds = (performance.now() - start) / 1000;
    const serverCpu = cpuSeconds(server.pid) - serverFrom;
    const own = process.cpuUsage(loadFrom);
    const h2load = load.resourceUsage()?.cpuTime;
    const text = await output;
    if (load.exitCode !== 0) throw new Error(`h2load: exit ${load.exitCode}: ${text}${await new Response(load.stderr).text()}`);
    const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(text);
    if (!codes || Number(codes[3]) + Number(codes[4]) > 0) throw new Error(`h2load: answers other than 2xx: ${text}`);
    const rate = (delivered - from) / seconds;
    // h2load's CPU over its whole run, a second longer than the window: an upper bound of its share.
    const loadCpu = ((own.user + own.system) / 1e6 + (h2load ? Number(h2load.total) / 1e6 : 0)) / seconds;
    return { rate, usPerMessage: (serverCpu * 1e6) / (delivered - from), serverCpu: (serverCpu / seconds) * 100, loadCpu: loadCpu * 100, answered: `${codes[1]} answered 2xx` };
  } finally {
    abort.abort();
    await server.stop();
  }
}

/** One peer's way to the server: its requests, and its stream's events (each event's data, parsed). */
interface PeerLink {
  request(method: string, path: string, body?: string): Promise<void>;
  stream(path: string, onEvent: (event: { type: string; senderId?: string }) => void): void;
  close(): void;
}

/** Splits an SSE byte stream into events' data, as text. */
function sseParser(onData: (data: string) => void): (text: string) => void {
  let buffer = '';
  return (text) => {
    buffer += text;
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split('\n')
        .filter((line) => line.startsWith('data: '))
        .map((line) => line.slice(6));
      if (data.length) onData(data.join('\n'));
    }
  };
}

/** HTTP/2: one connection per peer, multiplexing its stream and its requests. */
function h2Peer(base: string): PeerLink {
  const session = http2.connect(base, trusted);
  session.on('error', () => {});
  return {
    request: (method, path, body) =>
      new Promise((resolve, reject) => {
        const req = session.request({ ':method': method, ':path': path, 'content-type': 'text/plain' });
        let status = 0;
        req.on('response', (headers) => {
          status = Number(headers[':status']);
        });
        req.on('data', () => {});
        req.on('end', () => (status >= 200 && status < 300 ? resolve() : reject(new Error(`${method} ${path}: ${status}`))));
        req.on('error', reject);
        req.end(body);
      }),
    stream(path, onEvent) {
      const req = session.request({ ':method': 'GET', ':path': path });
      req.setEncoding('utf8');
      const parse = sseParser((data) => onEvent(JSON.parse(data)));
      req.on('data', (text: string) => parse(text));
      req.on('error', () => {});
    },
    close: () => session.destroy(),
  };
}

/** HTTP/1.1: Bun's fetch; the stream on a connection of its own. */
function h1Peer(base: string): PeerLink {
  const abort = new AbortController();
  return {
    async request(method, path, body) {
      const res = await fetch(`${base}${path}`, { method, body, tls: trusted });
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status}`);
    },
    stream(path, onEvent) {
      void (async () => {
        try {
          const res = await fetch(`${base}${path}`, { signal: abort.signal, tls: trusted });
          const decoder = new TextDecoder();
          const parse = sseParser((data) => onEvent(JSON.parse(data)));
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) parse(decoder.decode(chunk, { stream: true }));
        } catch {
          // Aborted when the peer leaves.
        }
      })();
    },
    close: () => abort.abort(),
  };
}

const OFFER = (k: number) => JSON.stringify({ type: 'offer', target: 'viewer', payload: sdpOffer(k) });
const ANSWER_BODY = JSON.stringify({ type: 'answer', target: 'device', payload: ANSWER });
const CANDIDATES = (k: number, target: string) =>
  Array.from({ length: 4 }, (_, n) => JSON.stringify({ type: 'ice-candidate', target, payload: iceCandidate(k * 8 + n + (target === 'device' ? 4 : 0)) }));

/** One session: register, streams, offer, answer, 4 + 4 candidates; resolves when both read the other's 4th candidate, then both leave. */
async function oneSession(peer: () => PeerLink, id: string, k: number): Promise<number> {
  const device = peer();
  const viewer = peer();
  const start = performance.now();
  try {
    let failed: (e: unknown) => void = () => {};
    let succeeded: () => void = () => {};
    const done = new Promise<void>((resolve, reject) => {
      failed = reject;
      succeeded = resolve;
    });
    let candidates = 0;
    const candidate = () => {
      if (++candidates === 8) succeeded();
    };
    const timeout = setTimeout(() => failed(new Error(`session ${id}: not set up within 10 s`)), 10_000);
    await device.request('POST', `/register/${id}/device`);
    device.stream(`/events/${id}/device`, (event) => {
      if (event.type === 'new-peer') device.request('POST', `/message/${id}/device`, OFFER(k)).catch(failed);
      else if (event.type === 'answer') Promise.all(CANDIDATES(k, 'viewer').map((body) => device.request('POST', `/message/${id}/device`, body))).catch(failed);
      else if (event.type === 'ice-candidate') candidate();
    });
    await viewer.request('POST', `/register/${id}/viewer`);
    viewer.stream(`/events/${id}/viewer`, (event) => {
      if (event.type === 'offer') {
        viewer
          .request('POST', `/message/${id}/viewer`, ANSWER_BODY)
          .then(() => Promise.all(CANDIDATES(k, 'device').map((body) => viewer.request('POST', `/message/${id}/viewer`, body))))
          .catch(failed);
      } else if (event.type === 'ice-candidate') candidate();
    });
    await done.finally(() => clearTimeout(timeout));
    const took = performance.now() - start;
    await Promise.all([device.request('DELETE', `/register/${id}/device`), viewer.request('DELETE', `/register/${id}/viewer`)]);
    return took;
  } finally {
    device.close();
    viewer.close();
  }
}

interface SetupFigures {
  perSecond: number;
  p50: number;
  p99: number;
  msPerSession: number;
  completed: number;
  failed: number;
  firstError?: string;
}

async function setup(protocol: Protocol, files: Certificate, plan: Plan): Promise<SetupFigures> {
  const server = await startTls(files);
  try {
    const peer = () => (protocol === 'HTTP/2' ? h2Peer(server.base) : h1Peer(server.base));
    const run = async (prefix: string, sessions: number, budgetMs: number) => {
      const latencies: number[] = [];
      let next = 0;
      let failed = 0;
      let firstError: string | undefined;
      const deadline = performance.now() + budgetMs;
      const [serverFrom, start] = [cpuSeconds(server.pid), performance.now()];
      await Promise.all(
        Array.from({ length: plan.inFlight }, async () => {
          while (next < sessions && performance.now() < deadline) {
            const k = next++;
            try {
              latencies.push(await oneSession(peer, `${prefix}${k}`, k));
            } catch (e) {
              failed++;
              firstError ??= (e as Error).message;
            }
          }
        }),
      );
      const seconds = (performance.now() - start) / 1000;
      const cpu = cpuSeconds(server.pid) - serverFrom;
      return { latencies, failed, firstError, seconds, cpu };
    };
    await run('w', Math.ceil(plan.sessions / 10), plan.budgetMs / 4);
    const { latencies, failed, firstError, seconds, cpu } = await run('m', plan.sessions, plan.budgetMs);
    return {
      perSecond: latencies.length / seconds,
      p50: quantile(latencies, 0.5),
      p99: quantile(latencies, 0.99),
      msPerSession: (cpu * 1000) / latencies.length,
      completed: latencies.length,
      failed,
      firstError,
    };
  } finally {
    await server.stop();
  }
}

/** The relay and session setup over TLS, HTTP/1.1 and HTTP/2 alternating. */
export async function benchTls(options: { smoke: boolean; log: (line: string) => void }): Promise<Row[]> {
  const plan = options.smoke ? SMOKE : FULL;
  if (!Bun.which('h2load') || !Bun.which('openssl')) {
    options.log('h2load (apt-get install nghttp2-client) or openssl is missing: no TLS rows');
    return [];
  }
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-tls-'));
  const rows: Row[] = [];
  try {
    const files = selfSignedCertificate(dir);
    trusted.ca = files.cert;
    const relayBench = `SSE relay over TLS (${plan.pairs} pairs, 257 B candidates; POSTs from h2load, ${plan.window} in flight per connection; streams HTTP/1.1)`;
    const setupBench = `Session setup over TLS (the flow of the session setup rows, ${plan.inFlight} in flight)`;
    const relayRows: Row[] = [];
    const setupRows: Row[] = [];
    for (const protocol of ['HTTP/1.1', 'HTTP/2'] as const) {
      const r = await relay(protocol, files, plan, dir);
      options.log(
        `relay ${protocol}: ${Math.round(r.rate)} msg/s, ${r.usPerMessage.toFixed(1)} µs/msg, server CPU ${r.serverCpu.toFixed(0)} %, load CPU ${r.loadCpu.toFixed(0)} %`,
      );
      relayRows.push({
        bench: relayBench,
        subject: `switchboard SSE, POSTs over ${protocol}`,
        figure: 'throughput',
        value: r.rate,
        unit: 'msg/s',
        note: `server CPU ${r.serverCpu.toFixed(0)} %, ${r.usPerMessage.toFixed(1)} µs/msg; load CPU ${r.loadCpu.toFixed(0)} % (this process and h2load); ${r.answered}`,
      });
      const s = await setup(protocol, files, plan);
      options.log(
        `setup ${protocol}: ${Math.round(s.perSecond)}/s, p50 ${s.p50.toFixed(1)} ms, p99 ${s.p99.toFixed(1)} ms, ${s.msPerSession.toFixed(2)} ms CPU per session, ${s.failed} failed ${s.firstError ?? ''}`,
      );
      if (options.smoke && s.failed) throw new Error(`session setup over ${protocol}: ${s.firstError}`);
      const failures = s.failed ? `, ${s.failed} failed: ${s.firstError}` : '';
      setupRows.push(
        {
          bench: setupBench,
          subject: `switchboard SSE over ${protocol}`,
          figure: 'sessions/s',
          value: s.perSecond,
          unit: '/s',
          note: `${s.msPerSession.toFixed(2)} ms server CPU per session; ${s.completed} sessions${failures}`,
        },
        { bench: setupBench, subject: `switchboard SSE over ${protocol}`, figure: 'p50', value: s.p50, unit: 'ms', note: `p99 ${s.p99.toFixed(1)} ms` },
      );
    }
    rows.push(...relayRows, ...setupRows);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean' } } });
  pinLoad((line) => console.error(line));
  const rows = await benchTls({ smoke: Boolean(values.smoke), log: (line) => console.error(line) });
  console.log(formatRows(rows));
  process.exit(0);
}
