// CPU time per POST /message without a socket, with the production logger at info level: what the
// routes, validation, telemetry, metrics and delivery cost per message. The messages are the relay
// benchmark's mix: nine ICE candidates (257 B) to one 4 KB SDP offer. Three paths: to a peer that holds
// them (202) and to one whose open stream is read (200), both through `app.handle` (Elysia's router);
// and the second through the handler Bun's router calls on a listener (`routes`, outside Elysia's chain).
// Usage: bun bench/message-cpu.ts [messages per run, default 40000] [runs, default 5]
import type { Server } from 'bun';
import { createApp } from '../src/app';
import { systemClock } from '../src/clock';
import { defaultConfig } from '../src/config';
import { createLogger } from '../src/log/logger';
import { iceCandidate, sdpOffer } from './signal-payloads';

const messages = Number(process.argv[2] ?? 40_000);
const runs = Number(process.argv[3] ?? 5);
const bodies = Array.from({ length: 10 }, (_, i) =>
  i === 9 ? JSON.stringify({ type: 'offer', target: 'b', payload: sdpOffer(i) }) : JSON.stringify({ type: 'ice-candidate', target: 'b', payload: iceCandidate(i) }),
);

type Path = 'held' | 'relayed' | 'relayed, listener route';

/** µs of CPU per message: to a peer that holds them (202), or to one whose open stream is read (200). */
async function run(path: Path): Promise<number> {
  const logger = createLogger({ level: 'info', format: 'json', clock: systemClock, write: () => {} });
  const server = createApp(
    defaultConfig({ maxQueue: 100_000, maxPeerEventBytes: 2 ** 30, maxEventBytes: 2 ** 31, messageRatePerS: 0, peerMessageRatePerS: 0, registerRatePerMin: 0 }),
    { logger },
  );
  const { app } = server;
  const listenerRoute = server.routes['/message/:sessionId/:peerId'].POST;
  // No socket: no client address, as through app.handle.
  const noServer = null as unknown as Server<unknown>;
  let n = 0;
  const send = async () => {
    const body = bodies[n++ % bodies.length] as string;
    const request = new Request('http://localhost/message/s/a', { method: 'POST', body, headers: { 'content-length': String(Buffer.byteLength(body)) } });
    const res = path === 'relayed, listener route' ? await listenerRoute(Object.assign(request, { params: { sessionId: 's', peerId: 'a' } }), noServer) : await app.handle(request);
    if (res.status !== (path === 'held' ? 202 : 200)) throw new Error(`unexpected ${res.status} at ${n}: ${await res.text()}`);
    await res.arrayBuffer();
  };
  await app.handle(new Request('http://localhost/register/s/a', { method: 'POST' }));
  await app.handle(new Request('http://localhost/register/s/b', { method: 'POST' }));
  let reading: Promise<void> = Promise.resolve();
  if (path !== 'held') {
    const stream = (await app.handle(new Request('http://localhost/events/s/b'))).body as ReadableStream<Uint8Array>;
    const reader = stream.getReader();
    // The stream is attached once its first frame (the retry and the cursor) can be read.
    await reader.read();
    reading = (async () => {
      while (!(await reader.read()).done);
    })();
  }
  // A turn of the event loop now and then lets the reader take what was written (its buffer drains).
  const sendAll = async (count: number) => {
    for (let i = 0; i < count; i++) {
      await send();
      if (i % 16 === 15) await new Promise((resolve) => setImmediate(resolve));
    }
  };
  await sendAll(2000); // warm up the JIT
  const start = process.cpuUsage();
  await sendAll(messages);
  const used = process.cpuUsage(start);
  await server.stop();
  await reading;
  return (used.user + used.system) / messages;
}

for (const path of ['held', 'relayed', 'relayed, listener route'] as const) {
  const results: number[] = [];
  for (let i = 0; i < runs; i++) results.push(await run(path));
  results.sort((a, b) => a - b);
  const median = results[Math.floor(results.length / 2)] as number;
  console.log(`${path}: ${median.toFixed(1)} µs CPU per message (median of ${runs}; min ${(results[0] as number).toFixed(1)}, max ${(results.at(-1) as number).toFixed(1)})`);
}
