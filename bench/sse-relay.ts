// Relay over HTTP + Server-Sent Events: `POST /message/:s/:p` in, the target's `GET /events/:s/:p` out.
//
//   bun bench/sse-relay.ts                       # full: about 65 s (bounded: every phase has a fixed length)
//   bun bench/sse-relay.ts --smoke               # 4 pairs, short phases: proves the code works (< 10 s)
//   bun bench/sse-relay.ts --profile /tmp/prof   # also a CPU profile (markdown) of switchboard's first throughput run
//   bun bench/sse-relay.ts --rate 2000           # the latency runs at 2,000 msg/s rather than half the throughput
//
// Every pair is a session of two peers: the receiver registers and opens its event stream, then the
// sender registers and POSTs `{"type":"ice-candidate"|"offer","target":"r","payload":{…}}` to it. Nine
// messages in ten are ICE candidates (a 257-byte body), one in ten an SDP offer for audio and video (a
// 4,041-byte body): see signal-payloads.ts. Every server runs as its own process pinned to CPU 0 (a
// fresh one for each measurement), the load (this process) on CPU 1, on raw sockets (raw-http.ts,
// raw-ws.ts): one keep-alive connection per sender, one per event stream.
//
//   throughput  each pair keeps `window` (8) messages in flight, sent and not yet both answered and read
//               from the target's stream, pipelined on its sender's connection: messages the targets
//               read per second. The floor is the same workload on a bare Bun.serve SSE relay
//               (servers/bare-sse.ts: the same routes, nothing else); the ratio is what switchboard
//               keeps of it. Beside them, the same 100 connections send the same POSTs, 8 in flight each,
//               to a bare Bun.serve hello-world: what Bun.serve does at the least, with no stream to
//               write. Pipelining gives all three their highest rate: 16 in flight gave the same, and
//               800 connections with one in flight each gave less (and left the load as the limit).
//               Hello-world, switchboard and the bare relay alternate, `runs` times each; medians are
//               reported, with the server's CPU time per message, which a busy machine disturbs least.
//   hot target  one session of `hotSenders` (50) senders, each on its own connection with 8 ICE
//               candidates pipelined, all to one receiver's stream: switchboard and the bare relay,
//               alternating with the runs above.
//   latency     the same pairs at half the relay throughput measured, from the moment a POST is written
//               to the moment its event is read by the target (the send time is in the payload). Sent
//               every millisecond, what is due by then, round robin over the pairs: a timer rather than
//               a busy loop, so that sending never holds up reading; each tick's few messages go out
//               together. Single messages cost the server more than pipelined ones (no batching), so
//               half the throughput is more than half its core: the notes give its CPU.
//   comparison  the same workload over switchboard's WebSocket transport (`/ws/:s/:p`; frames are POST
//               bodies, acks come back) and PeerJS server (OFFER/CANDIDATE relayed over its WebSocket):
//               throughput, and latency at the same rate as the SSE latency run.
//
// What bounds the figures: the server's one core (its CPU % is in the notes). The load's CPU is in the
// notes too; near 100 % it, not the server, would be what limits (hello-world brings it to about 90 %,
// most of it the kernel's loopback TCP).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuSeconds, inBatches, pinLoad, type ServerProcess, startServer } from './process';
import { connectHttp, type EventStream, encodeRequest, type HttpConnection, openEventStream } from './raw-http';
import { connectRaw, type RawWebSocket } from './raw-ws';
import { iceCandidate, payloadRest, sdpOffer } from './signal-payloads';
import { median, quantileOfSorted } from './stats';
import { formatRows, type Row } from './table';

export interface SseRelaySettings {
  pairs: number;
  /** Messages each pair keeps in flight in the throughput runs: the pipelining depth of its sender's connection. */
  window: number;
  /** One message in `offerEvery` is an SDP offer, the others ICE candidates. */
  offerEvery: number;
  /** Throughput runs of hello-world and switchboard SSE each, alternating. */
  runs: number;
  warmupMs: number;
  throughputMs: number;
  latencyMs: number;
  /** Which relays to measure beside switchboard SSE (which is always measured). */
  compare: readonly Transport[];
  /** The rate of the latency runs, messages per second; half the SSE throughput measured when unset. */
  latencyRate?: number;
  /** Write a CPU profile of switchboard's first SSE throughput run into this directory (markdown). */
  profileDir?: string;
  /** The one-hot-target runs: this many senders, each on its own connection, to one receiver. */
  hotSenders: number;
}

export const FULL: SseRelaySettings = {
  pairs: 100,
  window: 8,
  offerEvery: 10,
  runs: 3,
  warmupMs: 1000,
  throughputMs: 4000,
  latencyMs: 5000,
  compare: ['bare-sse', 'ws', 'peerjs'],
  hotSenders: 50,
};
export const SMOKE: SseRelaySettings = {
  pairs: 4,
  window: 4,
  offerEvery: 10,
  runs: 1,
  warmupMs: 150,
  throughputMs: 400,
  latencyMs: 400,
  compare: ['bare-sse', 'ws', 'peerjs'],
  hotSenders: 4,
};

export type Transport = 'sse' | 'ws' | 'peerjs' | 'bare-sse';

/** Runs of the one-hot-target workload, at most (each of switchboard and the bare relay). */
const HOT_RUNS = 2;

const here = import.meta.dir;
const SERVERS = {
  switchboard: [process.execPath, join(here, 'servers/switchboard.ts')],
  hello: [process.execPath, join(here, 'servers/hello.ts')],
  'bare-sse': [process.execPath, join(here, 'servers/bare-sse.ts')],
  // Under Node, its own runtime, when there is one.
  peerjs: Bun.which('node') ? ['node', join(here, 'servers/peerjs.mjs')] : [process.execPath, join(here, 'servers/peerjs.mjs')],
};

type Kind = 0 | 1; // an ICE candidate, an SDP offer

/** The kind of a pair's `n`-th message: the last of every `offerEvery` is an offer. */
const kindOf = (n: number, offerEvery: number): Kind => (n % offerEvery === offerEvery - 1 ? 1 : 0);

/** Relayed messages are the only events and frames with a `"t":` key (pings have `"time":`). */
const STAMP = Buffer.from('"t":');

/**
 * Send times go out at a fixed width, padded with spaces before the number (JSON allows them), so that a
 * stamped request is a copy of a template with the digits written in: its Content-Length never changes.
 */
const STAMP_WIDTH = 12;
const STAMP_MARK = '#'.repeat(STAMP_WIDTH);
const stampText = (t: number) => t.toFixed(3).padStart(STAMP_WIDTH);

/** The send time after `"t":` at `at`, a decimal number of milliseconds (performance.now()). */
function readStamp(buf: Buffer, at: number): number {
  let i = at;
  while (buf[i] === 0x20) i++;
  let whole = 0;
  for (let c = buf[i] as number; c >= 0x30 && c <= 0x39; c = buf[++i] as number) whole = whole * 10 + (c - 0x30);
  if (buf[i] !== 0x2e) return whole;
  let fraction = 0;
  let scale = 1;
  for (let c = buf[++i] as number; c >= 0x30 && c <= 0x39; c = buf[++i] as number) {
    fraction = fraction * 10 + (c - 0x30);
    scale *= 10;
  }
  return whole + fraction / scale;
}

/** Message bodies of one pair: the payload texts are made once, a stamp put in front of them. */
class Bodies {
  private readonly rests: [string, string];
  constructor(seed: number) {
    this.rests = [payloadRest(iceCandidate(seed)), payloadRest(sdpOffer(seed))];
  }
  payload(kind: Kind, stamp: string): string {
    return `{"t":${stamp},${this.rests[kind]}`;
  }
  /** A `POST /message` body (and a switchboard WebSocket frame). */
  signal(kind: Kind, stamp: string): string {
    return `{"type":"${kind ? 'offer' : 'ice-candidate'}","target":"r","payload":${this.payload(kind, stamp)}}`;
  }
}

/** Sizes of the two bodies, for the rows' titles. */
function bodySizes(): [number, number] {
  const bodies = new Bodies(0);
  return [bodies.signal(0, STAMP_MARK).length, bodies.signal(1, STAMP_MARK).length];
}

/** A message of fixed bytes with a place for the send time: each `at(t)` is a fresh copy, stamped. */
class StampedBytes {
  private readonly offset: number;
  constructor(private readonly template: Buffer) {
    this.offset = template.indexOf(STAMP_MARK);
  }
  at(t: number): Buffer {
    const out = Buffer.allocUnsafe(this.template.length);
    this.template.copy(out);
    out.write(stampText(t), this.offset, 'latin1');
    return out;
  }
}

/**
 * A pair's endless sequence of unstamped messages as one buffer, repeated, so that its next `n` messages
 * (n ≤ `most`) are one view of it: sending them costs no copy and one write.
 */
class MessageRing {
  private readonly bytes: Buffer;
  private readonly offsets: number[] = [0];
  private next = 0;
  constructor(
    encode: (kind: Kind) => Buffer,
    private readonly period: number,
    most: number,
  ) {
    const count = period * (Math.ceil(most / period) + 1);
    const parts = Array.from({ length: count }, (_, i) => encode(kindOf(i, period)));
    for (const part of parts) this.offsets.push((this.offsets.at(-1) as number) + part.length);
    this.bytes = Buffer.concat(parts);
  }
  take(n: number): Buffer {
    const from = this.next;
    this.next = (from + n) % this.period;
    return this.bytes.subarray(this.offsets[from], this.offsets[from + n]);
  }
}

/** One sender and its receiver, over whichever transport. */
interface Link {
  /** Sends the pair's next `n` messages (at most the window), unstamped, in one write. */
  send(n: number): void;
  /** Sends one message of `kind` stamped with the time now. */
  sendStamped(kind: Kind): void;
  /** Each relayed message the receiver read, with its stamp (0 when sent unstamped). */
  onDelivered: (sentAt: number) => void;
  /** Each answer (HTTP) or ack (switchboard WebSocket) the sender got; PeerJS sends none. */
  onAnswer: (status: number) => void;
  /** After a read on either socket. */
  onRead: () => void;
  /** Whether the sender gets an answer for every message. */
  readonly answers: boolean;
  /** The first answer that was neither 200 nor 202: the measurement fails with it. */
  failure?: string;
  close(): void;
}

type LinkOptions = Pick<SseRelaySettings, 'offerEvery' | 'window'>;

async function register(base: string, pair: string, peer: string): Promise<void> {
  const res = await fetch(`${base}/register/${pair}/${peer}`, { method: 'POST' });
  if (!res.ok) throw new Error(`register ${pair}/${peer}: ${res.status} ${await res.text()}`);
}

const noop = () => {};

/** `POST /message` on one keep-alive connection, and the receiver's `GET /events`. */
async function sseLink(base: string, pair: string, bodies: Bodies, options: LinkOptions): Promise<Link> {
  const host = new URL(base).host;
  const path = `/message/${pair}/s`;
  const request = (kind: Kind, stamp: string) => encodeRequest('POST', path, host, bodies.signal(kind, stamp));
  const ring = new MessageRing((kind) => request(kind, stampText(0)), options.offerEvery, options.window);
  const stamped = [new StampedBytes(request(0, STAMP_MARK)), new StampedBytes(request(1, STAMP_MARK))];
  let http: HttpConnection | undefined;
  let stream: EventStream | undefined;
  const link: Link = {
    answers: true,
    onDelivered: noop,
    onAnswer: noop,
    onRead: noop,
    send: (n) => http?.send(ring.take(n)),
    sendStamped: (kind) => http?.send((stamped[kind] as StampedBytes).at(performance.now())),
    close() {
      http?.close();
      stream?.close();
    },
  };
  await register(base, pair, 'r');
  stream = await openEventStream(base, `/events/${pair}/r`, {
    onEvent(buf, start, end) {
      const at = buf.indexOf(STAMP, start);
      if (at >= 0 && at < end) link.onDelivered(readStamp(buf, at + STAMP.length));
    },
    onRead: () => link.onRead(),
  });
  await register(base, pair, 's');
  http = await connectHttp(base);
  http.onResponse = (status, bytes, start, end) => {
    if (status === 200 || status === 202) link.onAnswer(status);
    else link.failure ??= `POST ${path}: ${status} ${bytes.toString('utf8', start, end)}`;
  };
  http.onRead = () => link.onRead();
  return link;
}

/** WebSocket frames from the sender: texts made once for unstamped messages, around the stamp for stamped ones. */
function frameTexts(text: (kind: Kind, stamp: string) => string, offerEvery: number) {
  const unstamped = [text(0, stampText(0)), text(1, stampText(0))];
  const around = [0, 1].map((kind) => text(kind as Kind, STAMP_MARK).split(STAMP_MARK)) as [string, string][];
  let next = 0;
  return {
    take: (n: number) => Array.from({ length: n }, () => unstamped[kindOf(next++, offerEvery)] as string),
    stamped: (kind: Kind) => {
      const [before, after] = around[kind] as [string, string];
      return before + stampText(performance.now()) + after;
    },
  };
}

/** A link over two WebSockets: the sender's frames out, the receiver's events in (and acks, if `answers`). */
function socketLink(answers: boolean, sender: RawWebSocket, receiver: RawWebSocket, frames: ReturnType<typeof frameTexts>): Link {
  const link: Link = {
    answers,
    onDelivered: noop,
    onAnswer: noop,
    onRead: noop,
    send: (n) => sender.send(...frames.take(n)),
    sendStamped: (kind) => sender.send(frames.stamped(kind)),
    close() {
      sender.close();
      receiver.close();
    },
  };
  sender.onRead = () => link.onRead();
  receiver.onText = (payload) => delivered(link, payload);
  receiver.onRead = () => link.onRead();
  return link;
}

/** switchboard's WebSocket transport: POST bodies as frames, an ack for each. */
async function wsLink(base: string, pair: string, bodies: Bodies, options: LinkOptions): Promise<Link> {
  const ws = base.replace('http', 'ws');
  await register(base, pair, 'r');
  const receiver = await connectRaw(`${ws}/ws/${pair}/r`);
  await register(base, pair, 's');
  const sender = await connectRaw(`${ws}/ws/${pair}/s`);
  const link = socketLink(
    true,
    sender,
    receiver,
    frameTexts((kind, stamp) => bodies.signal(kind, stamp), options.offerEvery),
  );
  sender.onText = (payload) => {
    // Acks start with {"ack"; events (the first ping) with {"id".
    if (payload[2] !== 0x61) return;
    const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.length);
    const at = buf.indexOf('"status":') + 9;
    const status = (buf[at] as number) * 100 + (buf[at + 1] as number) * 10 + (buf[at + 2] as number) - 0x30 * 111;
    if (status === 200 || status === 202) link.onAnswer(status);
    else link.failure ??= `ws ${pair}/s: ${buf.toString()}`;
  };
  return link;
}

/** PeerJS server: OFFER and CANDIDATE messages relayed to `dst`, nothing answered. */
async function peerjsLink(base: string, pair: string, bodies: Bodies, options: LinkOptions): Promise<Link> {
  const url = (id: string) => `${base.replace('http', 'ws')}/peerjs?key=peerjs&id=${id}&token=t${id}`;
  const receiver = await connectRaw(url(`${pair}r`));
  const sender = await connectRaw(url(`${pair}s`));
  const frames = frameTexts((kind, stamp) => `{"type":"${kind ? 'OFFER' : 'CANDIDATE'}","dst":"${pair}r","payload":${bodies.payload(kind, stamp)}}`, options.offerEvery);
  return socketLink(false, sender, receiver, frames);
}

function delivered(link: Link, payload: Uint8Array): void {
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.length);
  const at = buf.indexOf(STAMP);
  if (at >= 0) link.onDelivered(readStamp(buf, at + STAMP.length));
}

// The bare SSE relay speaks switchboard's HTTP + SSE routes.
const LINKS = { sse: sseLink, ws: wsLink, peerjs: peerjsLink, 'bare-sse': sseLink };

async function openLinks(transport: Transport, base: string, s: SseRelaySettings): Promise<Link[]> {
  const names = Array.from({ length: s.pairs }, (_, i) => i);
  return inBatches(names, 25, (i) => LINKS[transport](base, `p${i}`, new Bodies(i), s));
}

function closeLinks(links: Link[]): void {
  for (const link of links) link.close();
  const failure = links.find((l) => l.failure)?.failure;
  if (failure) throw new Error(failure);
}

/** Waits until `done()` or `ms` passed. */
async function settle(done: () => boolean, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (!done() && performance.now() < deadline) await Bun.sleep(20);
}

interface Throughput {
  /** Messages (or hello-world answers) per second. */
  rate: number;
  /** The server's and the load's CPU use meanwhile, % of one core. */
  serverCpu: number;
  loadCpu: number;
  /** Of the answers in the measured time, the share that was 202 (held, not written to an open stream). */
  heldPct: number;
  /** Messages sent and never read by the target, once sending stopped and what was in flight settled. */
  lost: number;
}

/** After the warm-up, `count()` per second over `throughputMs`, and both processes' CPU; `onStart` marks the start. */
async function measureWindow(server: ServerProcess, s: SseRelaySettings, count: () => number, onStart = () => {}): Promise<Pick<Throughput, 'rate' | 'serverCpu' | 'loadCpu'>> {
  await Bun.sleep(s.warmupMs);
  onStart();
  const from = count();
  const serverFrom = cpuSeconds(server.pid);
  const loadFrom = process.cpuUsage();
  const start = performance.now();
  await Bun.sleep(s.throughputMs);
  const seconds = (performance.now() - start) / 1000;
  const load = process.cpuUsage(loadFrom);
  return {
    rate: (count() - from) / seconds,
    serverCpu: ((cpuSeconds(server.pid) - serverFrom) / seconds) * 100,
    loadCpu: ((load.user + load.system) / 1e6 / seconds) * 100,
  };
}

/** What a throughput run counts as it goes: messages read from the streams, sent, and the answers. */
interface RelayCounts {
  delivered: number;
  sent: number;
  answers: { 200: number; 202: number };
  /** Cleared when the measured window ends: nothing more is sent. */
  sending: boolean;
}

const relayCounts = (): RelayCounts => ({ delivered: 0, sent: 0, answers: { 200: 0, 202: 0 }, sending: true });

/** The measured window of a throughput run, then what was in flight settled: the rate, the share held (202), what was never read. */
async function measureRelay(server: ServerProcess, s: SseRelaySettings, c: RelayCounts): Promise<Throughput> {
  let answersFrom = { ...c.answers };
  const measured = await measureWindow(
    server,
    s,
    () => c.delivered,
    () => (answersFrom = { ...c.answers }),
  );
  const held = c.answers[202] - answersFrom[202];
  const all = held + c.answers[200] - answersFrom[200];
  c.sending = false;
  await settle(() => c.delivered === c.sent, 2000);
  return { ...measured, heldPct: all ? (held / all) * 100 : 0, lost: c.sent - c.delivered };
}

/** Each pair keeps `window` messages in flight; what the targets read per second. */
async function relayThroughput(transport: Transport, server: ServerProcess, s: SseRelaySettings): Promise<Throughput> {
  const links = await openLinks(transport, server.base, s);
  const c = relayCounts();
  for (const link of links) {
    let linkSent = 0;
    let linkDelivered = 0;
    let linkAnswered = 0;
    const pump = () => {
      if (!c.sending) return;
      const done = link.answers ? Math.min(linkDelivered, linkAnswered) : linkDelivered;
      const n = s.window - (linkSent - done);
      if (n <= 0) return;
      linkSent += n;
      c.sent += n;
      link.send(n);
    };
    link.onDelivered = () => {
      linkDelivered++;
      c.delivered++;
    };
    link.onAnswer = (status) => {
      linkAnswered++;
      c.answers[status as 200 | 202]++;
    };
    // Whatever one read freed goes out in one write.
    link.onRead = pump;
    pump();
  }
  const measured = await measureRelay(server, s, c);
  closeLinks(links);
  return measured;
}

/**
 * One hot target: `hotSenders` peers of one session, each on its own keep-alive connection with `window`
 * ICE candidates (257 B) pipelined, all to the one receiver's stream. What a busy peer (a publisher that
 * every viewer c.answers) costs, where the 100-pair mix spreads the writes over 100 streams.
 */
async function hotTargetThroughput(server: ServerProcess, s: SseRelaySettings): Promise<Throughput> {
  const { base } = server;
  const host = new URL(base).host;
  const c = relayCounts();
  let failure: string | undefined;
  await register(base, 'hot', 'r');
  const pumps: (() => void)[] = [];
  const pumpAll = () => {
    for (const pump of pumps) pump();
  };
  const stream = await openEventStream(base, '/events/hot/r', {
    onEvent(buf, start, end) {
      const at = buf.indexOf(STAMP, start);
      if (at >= 0 && at < end) c.delivered++;
    },
    onRead: pumpAll,
  });
  const senders = await inBatches(
    Array.from({ length: s.hotSenders }, (_, i) => i),
    25,
    async (i) => {
      await register(base, 'hot', `s${i}`);
      const one = encodeRequest('POST', `/message/hot/s${i}`, host, new Bodies(i).signal(0, stampText(0)));
      const ring = Buffer.concat(Array.from({ length: s.window }, () => one));
      const http = await connectHttp(base);
      let sentHere = 0;
      let answeredHere = 0;
      const pump = () => {
        // The window bounds what waits for an answer, and all of them together what waits for the stream.
        const n = Math.min(s.window - (sentHere - answeredHere), s.hotSenders * s.window - (c.sent - c.delivered));
        if (!c.sending || n <= 0) return;
        sentHere += n;
        c.sent += n;
        http.send(ring.subarray(0, n * one.length));
      };
      http.onResponse = (status, bytes, start, end) => {
        answeredHere++;
        if (status === 200 || status === 202) c.answers[status]++;
        else failure ??= `POST /message/hot/s${i}: ${status} ${bytes.toString('utf8', start, end)}`;
      };
      http.onRead = pump;
      pumps.push(pump);
      return http;
    },
  );
  pumpAll();
  const measured = await measureRelay(server, s, c);
  for (const http of senders) http.close();
  stream.close();
  if (failure) throw new Error(failure);
  return measured;
}

/** The same connections and POSTs against hello-world, `window` in flight on each: answers per second. */
async function helloThroughput(server: ServerProcess, s: SseRelaySettings): Promise<Throughput> {
  const host = new URL(server.base).host;
  let answered = 0;
  let sending = true;
  let failure: string | undefined;
  const connections = await inBatches(
    Array.from({ length: s.pairs }, (_, i) => i),
    25,
    async (i) => {
      const bodies = new Bodies(i);
      const path = `/message/p${i}/s`;
      const ring = new MessageRing((kind) => encodeRequest('POST', path, host, bodies.signal(kind, stampText(0))), s.offerEvery, s.window);
      const http = await connectHttp(server.base);
      let sentHere = 0;
      let answeredHere = 0;
      const pump = () => {
        const n = s.window - (sentHere - answeredHere);
        if (!sending || n <= 0) return;
        sentHere += n;
        http.send(ring.take(n));
      };
      http.onResponse = (status, bytes, start, end) => {
        if (status !== 200) failure ??= `hello-world: ${status} ${bytes.toString('utf8', start, end)}`;
        answeredHere++;
        answered++;
      };
      http.onRead = pump;
      return { http, pump };
    },
  );
  for (const c of connections) c.pump();
  const measured = await measureWindow(server, s, () => answered);
  sending = false;
  await Bun.sleep(100);
  for (const c of connections) c.http.close();
  if (failure) throw new Error(failure);
  return { ...measured, heldPct: 0, lost: 0 };
}

interface Latency {
  p50: number;
  p99: number;
  p999: number;
  /** The rate actually sent while measuring, messages per second. */
  sentRate: number;
  serverCpu: number;
  loadCpu: number;
  lost: number;
}

/** Open loop at `rate` messages per second: from the POST (or frame) written to the event read. */
async function relayLatency(transport: Transport, server: ServerProcess, s: SseRelaySettings, rate: number): Promise<Latency> {
  const links = await openLinks(transport, server.base, s);
  const capacity = Math.ceil((rate * (s.warmupMs + s.latencyMs)) / 1000) + 1;
  const latencies = new Float64Array(capacity);
  let recorded = 0;
  let delivered = 0;
  let measuring = false;
  for (const link of links) {
    link.onDelivered = (sentAt) => {
      delivered++;
      if (measuring && recorded < capacity) latencies[recorded++] = performance.now() - sentAt;
    };
  }
  // A timer rather than a busy loop leaves the load's core idle between ticks, so that sending does not
  // hold up receiving; each tick sends what is due by then, at most one message per pair when the rate
  // is under 1,000 × pairs.
  const start = performance.now();
  const end = start + s.warmupMs + s.latencyMs;
  let sent = 0;
  let next = 0;
  let measuredFrom = start;
  let sentFrom = 0;
  let cpuFrom = process.cpuUsage();
  let serverFrom = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      if (!measuring && now - start >= s.warmupMs) {
        measuring = true;
        measuredFrom = now;
        sentFrom = sent;
        cpuFrom = process.cpuUsage();
        serverFrom = cpuSeconds(server.pid);
      }
      const due = Math.min(Math.floor(((now - start) * rate) / 1000), capacity);
      while (sent < due) {
        const link = links[next] as Link;
        next = (next + 1) % links.length;
        link.sendStamped(kindOf(sent++, s.offerEvery));
      }
      if (now >= end) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  const elapsedMs = performance.now() - measuredFrom;
  const cpu = process.cpuUsage(cpuFrom);
  const serverCpu = ((cpuSeconds(server.pid) - serverFrom) * 1e5) / elapsedMs;
  await settle(() => delivered === sent, 2000);
  closeLinks(links);
  const sorted = latencies.subarray(0, recorded).sort();
  return {
    p50: quantileOfSorted(sorted, 0.5),
    p99: quantileOfSorted(sorted, 0.99),
    p999: quantileOfSorted(sorted, 0.999),
    sentRate: ((sent - sentFrom) * 1000) / elapsedMs,
    serverCpu,
    loadCpu: ((cpu.user + cpu.system) / 1000 / elapsedMs) * 100,
    lost: sent - delivered,
  };
}

const pct = (value: number) => `${Math.round(value)} %`;
const kilo = (value: number) => `${(value / 1000).toFixed(1)} k`;
const describe = (t: Throughput | undefined) => (t ? `${kilo(t.rate)}/s, server CPU ${pct(t.serverCpu)}, load CPU ${pct(t.loadCpu)}` : '');

/** Starts a fresh server for one measurement and stops it after. */
async function withServer<T>(name: keyof typeof SERVERS, measure: (server: ServerProcess) => Promise<T>, profileDir?: string): Promise<T> {
  const server = await startServer(name, SERVERS[name], { pin: true, profileDir });
  try {
    return await measure(server);
  } finally {
    await server.stop();
  }
}

/**
 * The relay figures: switchboard's SSE relay throughput beside the bare Bun.serve SSE relay (the floor)
 * and hello-world, for 100 pairs and for one hot target; its delivery latency at half that throughput
 * beside the bare relay's; and the same workload over its WebSocket transport and PeerJS server. Full
 * mode takes about 2 minutes, smoke mode under 15 s.
 */
export async function benchSseRelay(options: { smoke: boolean; log: (line: string) => void } & Partial<SseRelaySettings>): Promise<Row[]> {
  const { smoke, log, ...overrides } = options;
  const s: SseRelaySettings = { ...(smoke ? SMOKE : FULL), ...overrides };
  pinLoad(log);
  const [candidateBytes, offerBytes] = bodySizes();
  const bench = `SSE relay (${s.pairs} pairs, ${s.offerEvery - 1} × ${candidateBytes} B candidate : 1 × ${(offerBytes / 1024).toFixed(1)} KiB offer)`;
  const compareBench = `relay comparison (${s.pairs} pairs, same mix)`;

  const hello: Throughput[] = [];
  const sse: Throughput[] = [];
  const bare: Throughput[] = [];
  const hotSse: Throughput[] = [];
  const hotBare: Throughput[] = [];
  // The floor (the bare relay) alternates with switchboard, so that both see the same moments of a shared machine.
  for (let run = 1; run <= s.runs; run++) {
    hello.push(await withServer('hello', (server) => helloThroughput(server, s)));
    log(`run ${run}: hello-world ${describe(hello.at(-1))}`);
    sse.push(await withServer('switchboard', (server) => relayThroughput('sse', server, s), run === 1 ? s.profileDir : undefined));
    log(`run ${run}: switchboard SSE ${describe(sse.at(-1))}`);
    bare.push(await withServer('bare-sse', (server) => relayThroughput('bare-sse', server, s)));
    log(`run ${run}: bare SSE relay ${describe(bare.at(-1))}`);
    // Two runs of the hot target are enough to see its spread, and keep bun run bench within its time.
    if (run > HOT_RUNS) continue;
    hotSse.push(await withServer('switchboard', (server) => hotTargetThroughput(server, s)));
    log(`run ${run}: one hot target, switchboard SSE ${describe(hotSse.at(-1))}`);
    hotBare.push(await withServer('bare-sse', (server) => hotTargetThroughput(server, s)));
    log(`run ${run}: one hot target, bare SSE relay ${describe(hotBare.at(-1))}`);
  }
  if (s.profileDir) {
    const profiles = readdirSync(s.profileDir).filter((f) => f.endsWith('.md'));
    log(`CPU profile of switchboard's SSE throughput run in ${s.profileDir}: ${profiles.join(', ')}`);
  }
  const mid = (runs: Throughput[], key: keyof Throughput) => median(runs.map((r) => r[key]));
  const spread = (runs: Throughput[]) => (runs.length > 1 ? `, median of ${runs.length}: ${runs.map((r) => kilo(r.rate)).join(' / ')}` : '');
  const lost = (n: number) => (n ? `, ${n} not read within 2 s of the end` : '');
  // Server CPU time per message: what a busy machine disturbs least (it leaves out time the server waited
  // for its core), and one core's worth of it is the rate the server would reach with the core to itself.
  const cost = (runs: Throughput[]) => median(runs.map((r) => (r.serverCpu * 1e4) / r.rate));
  const relayNote = (runs: Throughput[]) =>
    `server CPU ${pct(mid(runs, 'serverCpu'))}, ${cost(runs).toFixed(1)} µs/msg, load CPU ${pct(mid(runs, 'loadCpu'))}, ${mid(runs, 'heldPct').toFixed(1)} % answered 202${spread(runs)}${lost(Math.max(...runs.map((r) => r.lost)))}`;
  const sseRate = mid(sse, 'rate');
  const helloRate = mid(hello, 'rate');
  const bareRate = mid(bare, 'rate');
  const hotBench = `SSE relay, one hot target (${s.hotSenders} connections, ${candidateBytes} B candidates, ${s.window} pipelined on each)`;

  const rows: Row[] = [
    { bench, subject: 'switchboard SSE', figure: 'throughput', value: sseRate, unit: 'msg/s', note: relayNote(sse) },
    { bench, subject: 'bare Bun.serve SSE relay (the floor)', figure: 'throughput, same POSTs and streams', value: bareRate, unit: 'msg/s', note: relayNote(bare) },
    {
      bench,
      subject: 'switchboard SSE ÷ bare SSE relay',
      figure: 'throughput ratio',
      value: sseRate / bareRate,
      unit: '×',
      goal: { op: '>=', value: 0.8 },
      note: `by server CPU per message ${(cost(bare) / cost(sse)).toFixed(2)} ×; ${s.pairs} keep-alive connections, ${s.window} requests pipelined on each`,
    },
    {
      bench,
      subject: 'bare Bun.serve hello-world',
      figure: 'throughput, same POSTs',
      value: helloRate,
      unit: 'req/s',
      note: `server CPU ${pct(mid(hello, 'serverCpu'))}, ${cost(hello).toFixed(1)} µs/req, load CPU ${pct(mid(hello, 'loadCpu'))}${spread(hello)}; switchboard SSE ${(sseRate / helloRate).toFixed(2)} × of it, the bare relay ${(bareRate / helloRate).toFixed(2)} ×`,
    },
  ];
  const hotRows: Row[] = [
    { bench: hotBench, subject: 'switchboard SSE', figure: 'throughput', value: mid(hotSse, 'rate'), unit: 'msg/s', note: relayNote(hotSse) },
    { bench: hotBench, subject: 'bare Bun.serve SSE relay (the floor)', figure: 'throughput', value: mid(hotBare, 'rate'), unit: 'msg/s', note: relayNote(hotBare) },
    {
      bench: hotBench,
      subject: 'switchboard SSE ÷ bare SSE relay',
      figure: 'throughput ratio',
      value: mid(hotSse, 'rate') / mid(hotBare, 'rate'),
      unit: '×',
      goal: { op: '>=', value: 0.8 },
      note: `by server CPU per message ${(cost(hotBare) / cost(hotSse)).toFixed(2)} ×`,
    },
  ];

  // Half the relay's maximum, for every transport alike.
  const rate = s.latencyRate ?? Math.max(1, Math.round(sseRate / 2));
  const latency = await withServer('switchboard', (server) => relayLatency('sse', server, s, rate));
  const latencyNote = (l: Latency) => `at ${kilo(l.sentRate)} msg/s, server CPU ${pct(l.serverCpu)}, load CPU ${pct(l.loadCpu)}${lost(l.lost)}`;
  log(
    `switchboard SSE latency at ${kilo(latency.sentRate)} msg/s: p50 ${latency.p50.toFixed(2)} p99 ${latency.p99.toFixed(2)} p999 ${latency.p999.toFixed(2)} ms, server CPU ${pct(latency.serverCpu)}`,
  );

  const subjects: Record<Transport, [keyof typeof SERVERS, string]> = {
    sse: ['switchboard', 'switchboard SSE'],
    ws: ['switchboard', 'switchboard WebSocket'],
    peerjs: ['peerjs', 'PeerJS server'],
    'bare-sse': ['bare-sse', 'bare Bun.serve SSE relay'],
  };
  const compared = new Map<Transport, { t: Throughput; l: Latency }>();
  for (const transport of s.compare) {
    const [server, subject] = subjects[transport];
    // The bare relay's throughput was measured beside switchboard's above.
    const t = transport === 'bare-sse' ? (bare[Math.floor(bare.length / 2)] as Throughput) : await withServer(server, (p) => relayThroughput(transport, p, s));
    const l = await withServer(server, (p) => relayLatency(transport, p, s, rate));
    compared.set(transport, { t, l });
    log(`${subject}: ${describe(t)}; at ${kilo(l.sentRate)} msg/s p50 ${l.p50.toFixed(2)} p99 ${l.p99.toFixed(2)} ms, server CPU ${pct(l.serverCpu)}`);
  }
  const bareLatency = compared.get('bare-sse')?.l;
  rows.push(
    { bench, subject: 'switchboard SSE', figure: 'latency p50 at ½ throughput', value: latency.p50, unit: 'ms', note: latencyNote(latency) },
    {
      bench,
      subject: 'switchboard SSE',
      figure: 'latency p99 at ½ throughput',
      value: latency.p99,
      unit: 'ms',
      goal: bareLatency ? { op: '<=', value: 1.5 * bareLatency.p99 } : undefined,
      note: bareLatency ? `goal: 1.5 × the bare relay's p99 at the same rate (${bareLatency.p99.toFixed(2)} ms)` : undefined,
    },
    { bench, subject: 'switchboard SSE', figure: 'latency p999 at ½ throughput', value: latency.p999, unit: 'ms' },
    ...hotRows,
  );
  for (const [transport, { t, l }] of compared) {
    const subject = subjects[transport][1];
    rows.push(
      {
        bench: compareBench,
        subject,
        figure: 'throughput',
        value: t.rate,
        unit: 'msg/s',
        note: `${(t.rate / sseRate).toFixed(2)} × SSE, server CPU ${pct(t.serverCpu)}, ${((t.serverCpu * 1e4) / t.rate).toFixed(1)} µs/msg, load CPU ${pct(t.loadCpu)}${lost(t.lost)}`,
      },
      { bench: compareBench, subject, figure: 'latency p50 at SSE’s ½ throughput', value: l.p50, unit: 'ms', note: latencyNote(l) },
      { bench: compareBench, subject, figure: 'latency p99 at SSE’s ½ throughput', value: l.p99, unit: 'ms' },
    );
  }
  const ws = compared.get('ws');
  const peerjs = compared.get('peerjs');
  if (ws && peerjs) {
    rows.push(
      {
        bench: compareBench,
        subject: 'switchboard WebSocket ÷ PeerJS server',
        figure: 'throughput ratio',
        value: ws.t.rate / peerjs.t.rate,
        unit: '×',
        goal: { op: '>=', value: 1.8 },
        note: `by server CPU per message ${(((peerjs.t.serverCpu / peerjs.t.rate) * ws.t.rate) / ws.t.serverCpu).toFixed(2)} ×`,
      },
      {
        bench: compareBench,
        subject: 'switchboard WebSocket',
        figure: 'latency p99 at SSE’s ½ throughput, against PeerJS’s',
        value: ws.l.p99,
        unit: 'ms',
        goal: { op: '<=', value: peerjs.l.p99 },
        note: `goal: PeerJS server's p99 at the same rate (${peerjs.l.p99.toFixed(2)} ms)`,
      },
    );
  }
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      smoke: { type: 'boolean' },
      profile: { type: 'string' },
      pairs: { type: 'string' },
      window: { type: 'string' },
      runs: { type: 'string' },
      compare: { type: 'string' },
      rate: { type: 'string' },
    },
  });
  const overrides: Partial<SseRelaySettings> = {};
  if (values.profile) overrides.profileDir = values.profile;
  if (values.pairs) overrides.pairs = Number(values.pairs);
  if (values.window) overrides.window = Number(values.window);
  if (values.runs) overrides.runs = Number(values.runs);
  if (values.rate) overrides.latencyRate = Number(values.rate);
  if (values.compare !== undefined) overrides.compare = values.compare.split(',').filter(Boolean) as Transport[];
  const rows = await benchSseRelay({ smoke: Boolean(values.smoke), log: (line) => console.error(line), ...overrides });
  console.log(formatRows(rows));
  process.exit(0);
}
