// The compiled executable's first relay session: its start and idle memory, then how long a viewer of a
// live relay session waits from its registration to its first video packet, for the first viewer of
// the process and the one after it.
//
//   bun bench/relay-join.ts [--binary dist/switchboard] [--runs 5] [--rtt MS] [NAME=value …]
//
// NAME=value pairs are settings for the executable (RELAY_PREWARM=on, RELAY_KEYFRAME_CACHE_BYTES=0).
// Each run starts the executable (PORT=0, a bare environment), reads its listening line, asks GET
// /healthz until a 200 (start), waits 2 s and reads its RSS (idle), then starts a werift publisher of
// synthetic 1.5 Mbit/s VP8 that ignores keyframe requests and sends a keyframe every 10 s, as cheap
// dashcam encoders do (bench/relay-peers.ts); a second later a werift viewer registers, then a second
// one. Build first (`bun run build`). The figures are medians over the runs; on a shared machine they
// move with its load. `--rtt MS`: the server that far away, for the signalling (test/client/tcp-proxy.ts,
// half of it each way) and the media (every datagram this process sends leaves MS later: a round
// trip's worth on the way out, none on the way back).
import { Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startTcpProxy } from '../test/client/tcp-proxy';
import { benchPublisher, relayPeer } from './relay-peers';
import { median } from './stats';

const { values, positionals } = parseArgs({
  options: { binary: { type: 'string', default: 'dist/switchboard' }, runs: { type: 'string', default: '5' }, rtt: { type: 'string', default: '0' } },
  allowPositionals: true,
});
const rttMs = Number(values.rtt);
if (!(Number.isInteger(rttMs) && rttMs >= 0 && rttMs <= 2000)) throw new Error(`--rtt takes a whole number of milliseconds from 0 to 2000, not ${values.rtt}`);
if (rttMs > 0) {
  // The media's round trip: every datagram of this process's peers leaves rttMs later.
  const send = Socket.prototype.send;
  Socket.prototype.send = function (this: Socket, ...args: unknown[]) {
    setTimeout(() => {
      try {
        (send as (...a: unknown[]) => void).apply(this, args);
      } catch {
        // Closed in the meantime, as a socket is at the end of a run: the datagram is lost, as it would be.
      }
    }, rttMs);
  } as typeof send;
}
const settings = Object.fromEntries(positionals.map((pair) => pair.split('=', 2) as [string, string]));
const WAIT_MS = 15_000;

const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;

async function start(): Promise<{ proc: ReturnType<typeof Bun.spawn>; url: string; startMs: number; stopProxy: () => Promise<void> }> {
  const t0 = performance.now();
  const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PORT: '0', HOST: '127.0.0.1', RELAY_HOST_IPS: '127.0.0.1', ...settings };
  const proc = Bun.spawn([values.binary as string], { env, stdout: 'pipe', stderr: 'inherit' });
  const reader = proc.stdout.getReader();
  let text = '';
  let port = 0;
  while (!port) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${values.binary} exited before listening`);
    text += new TextDecoder().decode(value);
    port = Number(/listening on http:\/\/[^\s"]*:(\d+)/.exec(text)?.[1] ?? 0);
  }
  void (async () => {
    while (!(await reader.read()).done);
  })();
  const direct = `http://127.0.0.1:${port}`;
  while ((await fetch(`${direct}/healthz`).catch(() => undefined))?.status !== 200);
  const startMs = performance.now() - t0;
  // The signalling's round trip, for the peers (the start above is measured without it).
  const proxy = rttMs > 0 ? await startTcpProxy(direct, { oneWayMs: rttMs / 2 }) : undefined;
  return { proc, url: proxy?.url ?? direct, startMs, stopProxy: async () => proxy?.stop() };
}

/** Registration → first video packet of a new viewer, or undefined if none came within WAIT_MS. */
async function join(url: string, peerId: string): Promise<{ ms: number | undefined; close: () => Promise<void> }> {
  const t0 = performance.now();
  let firstAt = 0;
  const peer = await relayPeer(
    url,
    'cam',
    peerId,
    '',
    () => {},
    (pc) => {
      pc.onTrack.subscribe((track) => {
        if (track.kind === 'video') track.onReceiveRtp.subscribe(() => void (firstAt ||= performance.now()));
      });
    },
  );
  while (!firstAt && performance.now() - t0 < WAIT_MS) await Bun.sleep(5);
  return { ms: firstAt ? firstAt - t0 : undefined, close: () => peer.close() };
}

const rows: { startMs: number; idleMB: number; first?: number; second?: number }[] = [];
for (let run = 0; run < Number(values.runs); run++) {
  const { proc, url, startMs, stopProxy } = await start();
  await Bun.sleep(2000);
  const idleMB = rssOf(proc.pid) / 1e6;
  const publisher = await benchPublisher(url, 'cam', 1500, { keyframeIntervalS: 10, honoursKeyframeRequests: false });
  await Bun.sleep(1000);
  const first = await join(url, 'viewer-1');
  const second = await join(url, 'viewer-2');
  rows.push({ startMs, idleMB, first: first.ms, second: second.ms });
  await Promise.all([first.close(), second.close(), publisher.close()]);
  await stopProxy();
  proc.kill('SIGTERM');
  await proc.exited;
}
const ms = (xs: (number | undefined)[]) => {
  const got = xs.filter((x): x is number => x !== undefined);
  const missed = xs.length - got.length;
  return `${got.length ? Math.round(median(got)) : '-'} ms${missed ? ` (${missed} got nothing in ${WAIT_MS / 1000} s)` : ''}`;
};
console.log(
  `${values.binary} ${positionals.join(' ') || '(defaults)'}${rttMs ? `, ${rttMs} ms round trip` : ''}, ${rows.length} runs, medians: start ${ms(rows.map((r) => r.startMs))}, idle RSS ${median(rows.map((r) => r.idleMB)).toFixed(1)} MB; ` +
    `registration → first video packet: first viewer ${ms(rows.map((r) => r.first))}, second ${ms(rows.map((r) => r.second))}`,
);
