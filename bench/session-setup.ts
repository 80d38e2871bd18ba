// Session setup: how long a device and a viewer take to meet and exchange what WebRTC needs (offer,
// answer, 4 ICE candidates each way), and how many such sessions a server sets up per second, for
// switchboard over SSE, switchboard over its WebSocket transport (each with the candidates one by one,
// and in one batch), and PeerJS server.
//
//   bun bench/session-setup.ts                    # the five subjects; about 3 minutes at most
//   bun bench/session-setup.ts --smoke            # 20 sessions per phase; a few seconds
//   bun bench/session-setup.ts --subjects sse,ws  # some of them (sse, ws, sse batched, ws batched, peerjs)
//   bun bench/session-setup.ts --subjects sse --profile /tmp/prof   # and a CPU profile of each Bun server (--cpu-prof-md)
//
// What one session is, per subject (the time runs from the device's first byte to the moment both sides
// have read the other's 4th candidate; leaving comes after it, untimed but part of the sessions/s):
//   switchboard SSE  device: POST /register, GET /events (open: the response head is in); then the viewer
//                    the same. The device reads `new-peer` (the viewer), POSTs the offer (~4 KB), reads
//                    the answer, POSTs its 4 candidates (~240 B each). The viewer reads the offer (held for
//                    it if its stream was not open yet), POSTs the answer (~2.6 KB), then its 4 candidates.
//                    Each peer's POSTs go over its own keep-alive connection (the 4 candidates pipelined,
//                    in one write, as a browser's trickle sends them within a few ms); each stream has its
//                    own connection. Leave: DELETE /register for both, then the streams' sockets close.
//   switchboard WS   the same flow, each peer on `/ws/<s>/<p>` after its POST /register; messages are frames
//                    without an `id` (the acks the server still sends are read and ignored). Leave: DELETE
//                    /register for both, then the sockets close.
//   … batched        the same flows (SSE, WS), each peer's 4 candidates in one batch, as the client library
//                    sends candidates that come within a few ms: one POST /message with a JSON array (a
//                    message of it refused fails the session), or one frame that is an array.
//   PeerJS server    no registration and no `new-peer`: the device connects (`/peerjs?key=…&id=…`) and
//                    reads OPEN, then the viewer; the viewer, who knows the device's id, sends the OFFER,
//                    the device reads it, sends the ANSWER and its 4 CANDIDATEs; the viewer reads the answer
//                    and sends its 4. Leave: both sockets close. Two HTTP round trips fewer per session
//                    than switchboard's flows (the registrations), and one server→client hop fewer (the
//                    `new-peer` the device waits for before offering).
// The payloads are the same bytes for all three (bench/signal-payloads.ts); the answer is the offer with
// five of its eight video codecs left out, as an answerer keeps the ones it supports.
//
// Per subject, a fresh server pinned to CPU 0; the load (this process) should run on CPU 1 (bench/index.ts
// pins it; run alone, this file pins itself). Three phases on that server, each bounded by a count and a
// time budget: a warm-up (1,000 sessions: PeerJS server under Node was still getting faster after
// 300, switchboard was not); 400 sessions one at a time (latency with no queueing); then 4,000
// sessions with 50 in flight (sessions per second, and latency under load; the server's CPU and this
// process's CPU are noted: the load must stay well below a core). The loaded phase runs in rounds of
// 1,000 sessions, the subjects taking turns round by round, so that a slower minute of the machine
// weighs on every subject alike (run one subject after the other, the ratio to PeerJS moved from 0.73
// to 1.06 between runs of the same code an hour apart); each ratio's note has its rounds' ratios. At
// 50 in flight the server's core is full, so that phase's p50 is mostly queueing (about 50 ÷
// sessions/s): it is the latency a burst of sessions sees, not the cost of one. The server's CPU time
// per session is noted too: on a machine shared with other work it is the figure least disturbed (time
// the server waits for its core is not in it). The server's RSS after a full GC, before and after the
// loaded phase, shows whether leaving frees what a session took (the first thousands of sessions grow
// the heap to its working size; later ones add nothing).
//
// The load speaks HTTP/1.1, SSE and WebSocket on Bun's TCP sockets: requests and event streams through
// bench/raw-http.ts, WebSockets through bench/raw-ws.ts, whose handlers are given before the connection
// opens: frames the server writes together with its 101 (the held offer, PeerJS's OPEN, switchboard's
// first ping) must not be lost.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuSeconds, pinLoad, type ServerProcess, startServer } from './process';
import { connectHttp, encodeRequest, type HttpConnection, openEventStream } from './raw-http';
import { connectRaw } from './raw-ws';
import { iceCandidate, sdpOffer } from './signal-payloads';
import { quantile } from './stats';
import { formatRows, type Row } from './table';

export interface SessionSetupOptions {
  smoke: boolean;
  log: (line: string) => void;
  /** Which subjects to run, by name (default all): `switchboard SSE`, `switchboard WS`, their `… batched`, `PeerJS server`. */
  subjects?: readonly string[];
  /** Write a CPU profile (markdown) of each Bun server, for its whole run, into a directory of this one named after its subject. */
  profileDir?: string;
}

interface Phase {
  sessions: number;
  inFlight: number;
  /** No new session starts after this many milliseconds of the phase. */
  budgetMs: number;
}

interface Plan {
  warmup: Phase;
  /** Sessions one (or a few) at a time: latency without queueing. */
  quiet: Phase;
  /** Many sessions in flight: latency under load, and sessions per second; `rounds` rounds of `sessions ÷ rounds`, the subjects alternating. */
  loaded: Phase & { rounds: number };
  /** A session not set up within this long fails (and is counted as failed). */
  timeoutMs: number;
  /** Rounds of 4 candidates from one peer to another, for the server's CPU per candidate (switchboard only). */
  candidateRounds: number;
}

// The budgets bound a full run to about 5 × (6 + 8 + 20 s) plus start-up, whatever the machine does.
const FULL: Plan = {
  warmup: { sessions: 1000, inFlight: 50, budgetMs: 6000 },
  quiet: { sessions: 400, inFlight: 1, budgetMs: 8000 },
  loaded: { sessions: 4000, inFlight: 50, budgetMs: 20_000, rounds: 4 },
  timeoutMs: 10_000,
  candidateRounds: 10_000,
};
const SMOKE: Plan = {
  warmup: { sessions: 5, inFlight: 5, budgetMs: 2000 },
  quiet: { sessions: 20, inFlight: 1, budgetMs: 2000 },
  loaded: { sessions: 20, inFlight: 10, budgetMs: 2000, rounds: 2 },
  timeoutMs: 3000,
  candidateRounds: 20,
};

const BENCH = 'Session setup (offer 4 KB, answer 2.6 KB, 4 + 4 candidates)';

// ---------------------------------------------------------------------------------------------------------
// What the peers send: the same payloads on every transport, serialised once.

const OFFER = sdpOffer(1);

/** The answer: the offer's SDP keeping VP8, VP9 profile 0 and H.264 42001f (and their RTX), as an answerer does. */
export const ANSWER = (() => {
  const dropped = new Set(['100', '101', '104', '105', '106', '107', '108', '109', '45', '46']);
  const sdp = String(OFFER.sdp)
    .split('\r\n')
    .filter((line) => {
      const match = /^a=(?:rtpmap|rtcp-fb|fmtp):(\d+)/.exec(line);
      return !(match && dropped.has(match[1] as string));
    })
    .join('\r\n')
    .replace('a=setup:actpass', 'a=setup:active');
  return { type: 'answer', sdp };
})();

const OFFER_JSON = [JSON.stringify(OFFER)];
const ANSWER_JSON = [JSON.stringify(ANSWER)];
const CANDIDATES_JSON = [0, 1, 2, 3].map((i) => JSON.stringify(iceCandidate(i)));

type Kind = 'new-peer' | 'offer' | 'answer' | 'candidate';

/** What each subject calls the messages of the flow, when it receives them. */
const KINDS: Record<string, Kind> = {
  'new-peer': 'new-peer',
  offer: 'offer',
  answer: 'answer',
  'ice-candidate': 'candidate',
  OFFER: 'offer',
  ANSWER: 'answer',
  CANDIDATE: 'candidate',
};

const TYPE_KEY = Buffer.from('"type":"');
const ERROR_KEY = Buffer.from('"error":');
const ACK_KEY = Buffer.from('"ack":');

/**
 * The top-level `type` of the message in `bytes` (`start`…`end`), decoding nothing else of its 4 KB: every
 * server here writes `type` before the payload, whose own `type` comes later. '' for an SSE block without
 * data and for an ack of switchboard's WebSocket (no `type`).
 */
function typeOf(bytes: Buffer, start = 0, end = bytes.length): string {
  const at = bytes.indexOf(TYPE_KEY, start);
  return at < 0 || at >= end ? '' : bytes.toString('latin1', at + 8, bytes.indexOf(0x22, at + 8));
}

/** The messages a peer received, by kind, with the time each arrived; a flow waits on counts of them. */
class Inbox {
  private readonly arrivals = new Map<Kind, number[]>();
  private waiters: { kind: Kind; count: number; resolve: (at: number) => void }[] = [];

  /** Takes a received message by its type; other types (pings, acks, peer-left) are ignored. */
  take(type: string): void {
    const kind = KINDS[type];
    if (!kind) return;
    const times = this.arrivals.get(kind) ?? [];
    times.push(performance.now());
    this.arrivals.set(kind, times);
    if (!this.waiters.length) return;
    this.waiters = this.waiters.filter((w) => {
      if (w.kind !== kind || times.length < w.count) return true;
      w.resolve(times[w.count - 1] as number);
      return false;
    });
  }

  /** Resolves with the time the `count`th message of `kind` arrived. */
  wait(kind: Kind, count = 1): Promise<number> {
    const arrived = this.arrivals.get(kind)?.[count - 1];
    if (arrived !== undefined) return Promise.resolve(arrived);
    return new Promise((resolve) => this.waiters.push({ kind, count, resolve }));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Connections. Requests and event streams: bench/raw-http.ts, with a promise per answer. WebSockets: a reader
// whose handler is set before the first byte arrives.

/** Requests on one keep-alive connection, answered in order; each resolves with its status. */
class Requests {
  private readonly waiting: { resolve: (status: number) => void; reject: (e: Error) => void; what: string }[] = [];
  private broken: Error | undefined;

  private constructor(
    private readonly connection: HttpConnection,
    private readonly host: string,
  ) {
    connection.onResponse = (status, body) => {
      const next = this.waiting.shift();
      if (!next) return;
      // A batch is answered 200 whatever became of its messages: a refused one names its error.
      if (status >= 300 || body.includes(ERROR_KEY)) next.reject(new Error(`${next.what}: ${status} ${body.toString('utf8', 0, 300)}`));
      else next.resolve(status);
    };
    void connection.closed.then(() => {
      this.broken = new Error('connection closed');
      for (const w of this.waiting.splice(0)) w.reject(new Error(`${w.what}: connection closed`));
    });
  }

  static async open(base: string): Promise<Requests> {
    return new Requests(await connectHttp(base), new URL(base).host);
  }

  get usable(): boolean {
    return this.broken === undefined;
  }

  /** Writes every request in one write; resolves when all are answered with a 2xx (and, for a batch, every message of it). */
  send(...requests: { method: string; path: string; body?: string }[]): Promise<number[]> {
    if (this.broken) return Promise.reject(this.broken);
    const answered = requests.map(({ method, path }) => new Promise<number>((resolve, reject) => this.waiting.push({ resolve, reject, what: `${method} ${path}` })));
    const encoded = requests.map(({ method, path, body }) => encodeRequest(method, path, this.host, body ?? ''));
    this.connection.send(encoded.length === 1 ? (encoded[0] as Buffer) : Buffer.concat(encoded));
    return Promise.all(answered);
  }

  close(): void {
    this.connection.close();
  }
}

/** A WebSocket whose every text frame goes to `onText` as a Buffer (valid only during the call), from the first. */
async function openWebSocket(base: string, path: string, onText: (payload: Buffer) => void): Promise<{ send(...texts: string[]): void; close(): Promise<void> }> {
  const ws = await connectRaw(`${base.replace('http', 'ws')}${path}`, { onText: (payload) => onText(Buffer.from(payload.buffer, payload.byteOffset, payload.length)) });
  return {
    send: (...texts) => ws.send(...texts),
    close() {
      ws.close();
      return ws.closed;
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// The flows.

/** One side of a session, as the flow sees it. */
interface Peer {
  inbox: Inbox;
  /** Sends messages of one kind to `to` (payloads as JSON text); resolves when the server took them (HTTP) or they were written (WS). */
  send(kind: Exclude<Kind, 'new-peer'>, to: string, payloads: readonly string[]): Promise<void>;
  /** Leaves as a client leaves, and closes every connection of the peer. */
  leave(): Promise<void>;
  /** Drops the connections at once (a failed session). */
  drop(): void;
}

/** The peers of one session that have joined so far; once it has failed, a peer joining late is dropped at once. */
class Joined {
  private readonly peers: Peer[] = [];
  private failed = false;

  add(peer: Peer): Peer {
    if (this.failed) peer.drop();
    else this.peers.push(peer);
    return peer;
  }

  leave(): Promise<unknown[]> {
    return Promise.all(this.peers.map((peer) => peer.leave()));
  }

  drop(): void {
    this.failed = true;
    for (const peer of this.peers.splice(0)) peer.drop();
  }
}

/** The offerer's part: offer, wait for the answer, send its candidates, wait for the other's 4th candidate. */
async function offerSide(peer: Peer, other: string): Promise<number> {
  await peer.send('offer', other, OFFER_JSON);
  await peer.inbox.wait('answer');
  await peer.send('candidate', other, CANDIDATES_JSON);
  return peer.inbox.wait('candidate', CANDIDATES_JSON.length);
}

/** The answerer's part: wait for the offer, answer, send its candidates, wait for the other's 4th candidate. */
async function answerSide(peer: Peer, other: string): Promise<number> {
  await peer.inbox.wait('offer');
  await peer.send('answer', other, ANSWER_JSON);
  await peer.send('candidate', other, CANDIDATES_JSON);
  return peer.inbox.wait('candidate', CANDIDATES_JSON.length);
}

/** What a concurrent worker holds between its sessions (for switchboard, the peers' keep-alive request connections). */
interface Slot {
  /** One session named `id`; resolves with its setup time in ms, once both peers have left. */
  session(id: string): Promise<number>;
  close(): void;
}

const switchboardTypes: Record<Exclude<Kind, 'new-peer'>, string> = { offer: 'offer', answer: 'answer', candidate: 'ice-candidate' };

/** switchboard's message bodies (or frames) for messages of one kind: one each, or one batch of them all. */
function switchboardBodies(batched: boolean) {
  return (kind: Exclude<Kind, 'new-peer'>, to: string, payloads: readonly string[]): string[] => {
    const messages = payloads.map((payload) => `{"type":"${switchboardTypes[kind]}","target":"${to}","payload":${payload}}`);
    return batched && messages.length > 1 ? [`[${messages.join(',')}]`] : messages;
  };
}

/**
 * The server's CPU time per candidate: one peer sends another, who reads its stream, `rounds` times its
 * 4 candidates together (pipelined POSTs or frames, or one batch), waiting for the answers (HTTP) or
 * the acks (WS) of each round before the next. The part of session setup that batching changes,
 * measured by CPU time rather than by rate, so that it is the figure a busy machine disturbs least.
 */
async function candidateCost(base: string, server: ServerProcess, transport: 'sse' | 'ws', batched: boolean, rounds: number): Promise<number> {
  const bodies = switchboardBodies(batched)('candidate', 'b', CANDIDATES_JSON);
  const http = await Requests.open(base);
  await http.send({ method: 'POST', path: '/register/cpu/a' }, { method: 'POST', path: '/register/cpu/b' });
  const reader = new Inbox();
  const stream = await openEventStream(base, '/events/cpu/b', { onEvent: (buf, start, end) => reader.take(typeOf(buf, start, end)) });
  let acks = 0;
  let acked: (() => void) | undefined;
  const ws =
    transport === 'ws'
      ? await openWebSocket(base, '/ws/cpu/a', (payload) => {
          if (payload.includes(ACK_KEY) && ++acks % CANDIDATES_JSON.length === 0) acked?.();
        })
      : undefined;
  const round = async () => {
    if (!ws) return void (await http.send(...bodies.map((body) => ({ method: 'POST', path: '/message/cpu/a', body }))));
    const done = new Promise<void>((resolve) => {
      acked = resolve;
    });
    ws.send(...bodies);
    await done;
  };
  try {
    for (let i = 0; i < Math.min(500, rounds); i++) await round();
    const before = cpuSeconds(server.pid);
    for (let i = 0; i < rounds; i++) await round();
    const used = cpuSeconds(server.pid) - before;
    return (used / (rounds * CANDIDATES_JSON.length)) * 1e6;
  } finally {
    await ws?.close();
    stream.close();
    http.close();
  }
}

/**
 * switchboard's flow over SSE or WebSocket: register and open, the device offers on `new-peer`. `batched`:
 * messages of one kind sent together (the candidates) go as one batch, one request or one frame.
 */
async function switchboardSlot(base: string, transport: 'sse' | 'ws', timeoutMs: number, batched = false): Promise<Slot> {
  const bodies = switchboardBodies(batched);
  const connections = { dev: await Requests.open(base), view: await Requests.open(base) };
  const requests = async (who: 'dev' | 'view') => {
    if (!connections[who].usable) connections[who] = await Requests.open(base);
    return connections[who];
  };

  const join = async (session: string, who: 'dev' | 'view'): Promise<Peer> => {
    const http = await requests(who);
    await http.send({ method: 'POST', path: `/register/${session}/${who}` });
    const inbox = new Inbox();
    let close: () => Promise<void>;
    let send: Peer['send'];
    if (transport === 'sse') {
      const stream = await openEventStream(base, `/events/${session}/${who}`, { onEvent: (buf, start, end) => inbox.take(typeOf(buf, start, end)) });
      close = () => {
        stream.close();
        return stream.closed;
      };
      send = async (kind, to, payloads) => {
        const path = `/message/${session}/${who}`;
        await http.send(...bodies(kind, to, payloads).map((body) => ({ method: 'POST', path, body })));
      };
    } else {
      const ws = await openWebSocket(base, `/ws/${session}/${who}`, (payload) => inbox.take(typeOf(payload)));
      close = () => ws.close();
      send = async (kind, to, payloads) => {
        ws.send(...bodies(kind, to, payloads));
      };
    }
    return {
      inbox,
      send,
      async leave() {
        await http.send({ method: 'DELETE', path: `/register/${session}/${who}` });
        await close();
      },
      drop: () => void close(),
    };
  };

  return {
    async session(id) {
      const joined = new Joined();
      const start = performance.now();
      const setup = (async () => {
        const device = joined.add(await join(id, 'dev'));
        const viewerJoined = join(id, 'view').then((viewer) => joined.add(viewer));
        const deviceDone = device.inbox.wait('new-peer').then(() => offerSide(device, 'view'));
        const viewerDone = viewerJoined.then((viewer) => answerSide(viewer, 'dev'));
        return Math.max(...(await Promise.all([deviceDone, viewerDone])));
      })();
      return finish(id, setup, start, joined, timeoutMs);
    },
    close() {
      connections.dev.close();
      connections.view.close();
    },
  };
}

const peerjsTypes: Record<Exclude<Kind, 'new-peer'>, string> = { offer: 'OFFER', answer: 'ANSWER', candidate: 'CANDIDATE' };

/** PeerJS server's flow: connect and read OPEN; the viewer, knowing the device's id, offers. */
async function peerjsSlot(base: string, timeoutMs: number): Promise<Slot> {
  const join = async (id: string): Promise<Peer> => {
    const inbox = new Inbox();
    let open!: () => void;
    let refused!: (e: Error) => void;
    const opened = new Promise<void>((resolve, reject) => {
      open = resolve;
      refused = reject;
    });
    const ws = await openWebSocket(base, `/peerjs?key=peerjs&id=${id}&token=t${id}`, (payload) => {
      const type = typeOf(payload);
      if (type === 'OPEN') open();
      else if (type === 'ERROR' || type === 'ID-TAKEN') refused(new Error(`PeerJS ${id}: ${payload.toString()}`));
      else inbox.take(type);
    });
    try {
      await opened;
    } catch (error) {
      void ws.close();
      throw error;
    }
    return {
      inbox,
      async send(kind, to, payloads) {
        const type = peerjsTypes[kind];
        ws.send(...payloads.map((payload) => `{"type":"${type}","dst":"${to}","payload":${payload}}`));
      },
      leave: () => ws.close(),
      drop: () => void ws.close(),
    };
  };
  return {
    async session(id) {
      const joined = new Joined();
      const start = performance.now();
      const setup = (async () => {
        const device = joined.add(await join(`${id}d`));
        const viewer = joined.add(await join(`${id}v`));
        return Math.max(...(await Promise.all([offerSide(viewer, `${id}d`), answerSide(device, `${id}v`)])));
      })();
      return finish(id, setup, start, joined, timeoutMs);
    },
    close() {},
  };
}

/** Waits for a session's setup (bounded), then lets its peers leave; the setup time in ms. */
async function finish(id: string, setup: Promise<number>, start: number, joined: Joined, timeoutMs: number): Promise<number> {
  // A setup that fails after its timeout is already counted.
  setup.catch(() => {});
  let timer: Timer | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`session ${id}: not set up and left within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const end = await Promise.race([setup, timeout]);
    await Promise.race([joined.leave(), timeout]);
    return end - start;
  } catch (error) {
    joined.drop();
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Phases and figures.

interface PhaseFigures {
  completed: number;
  failed: number;
  firstError?: string;
  p50: number;
  p99: number;
  perSecond: number;
  /** The server's and this process's CPU use during the phase, % of one core. */
  serverCpu: number;
  loadCpu: number;
  /** What figures of several rounds are made of (`combined`): each session's setup time, ms; the phase's length, s. */
  latencies: number[];
  seconds: number;
}

/** The figures of several rounds of a phase, as if they were one phase as long as all of them. */
function combined(rounds: readonly PhaseFigures[]): PhaseFigures {
  const latencies = rounds.flatMap((r) => r.latencies);
  const seconds = rounds.reduce((sum, r) => sum + r.seconds, 0);
  const weighted = (key: 'serverCpu' | 'loadCpu') => rounds.reduce((sum, r) => sum + r[key] * r.seconds, 0) / seconds;
  return {
    completed: latencies.length,
    failed: rounds.reduce((sum, r) => sum + r.failed, 0),
    firstError: rounds.find((r) => r.firstError !== undefined)?.firstError,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    perSecond: latencies.length / seconds,
    serverCpu: weighted('serverCpu'),
    loadCpu: weighted('loadCpu'),
    latencies,
    seconds,
  };
}

/** Runs `phase.sessions` sessions, `phase.inFlight` at a time, each worker with its own slot. */
async function runPhase(phase: Phase, server: ServerProcess, openSlot: () => Promise<Slot>, prefix: string): Promise<PhaseFigures> {
  const slots = await Promise.all(Array.from({ length: phase.inFlight }, openSlot));
  const latencies: number[] = [];
  let next = 0;
  let failed = 0;
  let firstError: string | undefined;
  const cpu = process.cpuUsage();
  const serverCpu = cpuSeconds(server.pid);
  const start = performance.now();
  await Promise.all(
    slots.map(async (slot) => {
      while (next < phase.sessions && performance.now() - start < phase.budgetMs) {
        const id = `${prefix}${next++}`;
        try {
          latencies.push(await slot.session(id));
        } catch (error) {
          failed++;
          firstError ??= error instanceof Error ? error.message : String(error);
        }
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  const figures: PhaseFigures = {
    completed: latencies.length,
    failed,
    firstError,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    perSecond: latencies.length / seconds,
    serverCpu: ((cpuSeconds(server.pid) - serverCpu) / seconds) * 100,
    loadCpu: ((used.user + used.system) / 1e6 / seconds) * 100,
    latencies,
    seconds,
  };
  for (const slot of slots) slot.close();
  return figures;
}

const here = import.meta.dir;

interface Subject {
  name: string;
  command: string[];
  slot(base: string, plan: Plan): Promise<Slot>;
  /** The server's CPU per candidate, µs, sent as this subject sends them (switchboard's). */
  candidateCost?(base: string, server: ServerProcess, plan: Plan): Promise<number>;
}

const SUBJECTS: Subject[] = [
  {
    name: 'switchboard SSE',
    command: [process.execPath, join(here, 'servers/switchboard.ts')],
    slot: (base, plan) => switchboardSlot(base, 'sse', plan.timeoutMs),
    candidateCost: (base, server, plan) => candidateCost(base, server, 'sse', false, plan.candidateRounds),
  },
  {
    name: 'switchboard WS',
    command: [process.execPath, join(here, 'servers/switchboard.ts')],
    slot: (base, plan) => switchboardSlot(base, 'ws', plan.timeoutMs),
    candidateCost: (base, server, plan) => candidateCost(base, server, 'ws', false, plan.candidateRounds),
  },
  {
    name: 'switchboard SSE batched',
    command: [process.execPath, join(here, 'servers/switchboard.ts')],
    slot: (base, plan) => switchboardSlot(base, 'sse', plan.timeoutMs, true),
    candidateCost: (base, server, plan) => candidateCost(base, server, 'sse', true, plan.candidateRounds),
  },
  {
    name: 'switchboard WS batched',
    command: [process.execPath, join(here, 'servers/switchboard.ts')],
    slot: (base, plan) => switchboardSlot(base, 'ws', plan.timeoutMs, true),
    candidateCost: (base, server, plan) => candidateCost(base, server, 'ws', true, plan.candidateRounds),
  },
  {
    name: 'PeerJS server',
    // Under Node, its own runtime, when there is one.
    command: Bun.which('node') ? ['node', '--expose-gc', join(here, 'servers/peerjs.mjs')] : [process.execPath, join(here, 'servers/peerjs.mjs')],
    slot: (base, plan) => peerjsSlot(base, plan.timeoutMs),
  },
];

/** Whether this process may run on CPU 0, where the servers are pinned. */
function sharesServerCpu(): boolean {
  const status = readFileSync('/proc/self/status', 'utf8');
  const list = /Cpus_allowed_list:\s*(\S+)/.exec(status)?.[1] ?? '0';
  return list.split(',').some((range) => Number(range.split('-')[0]) === 0);
}

const fixed = (value: number, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : '—');

/** Session setup against switchboard (SSE, then WebSocket; one by one, then batched) and PeerJS server; five rows each, and switchboard's CPU per candidate. */
export async function benchSessionSetup(options: SessionSetupOptions): Promise<Row[]> {
  const plan = options.smoke ? SMOKE : FULL;
  const shared = sharesServerCpu();
  if (shared) options.log('this process may run on CPU 0 with the servers: the figures include that contention');
  // All the servers start at once (their start-up is most of a smoke run); each is stopped once its figures are read.
  const subjects = SUBJECTS.filter((subject) => !options.subjects || options.subjects.includes(subject.name));
  const profileDir = (subject: Subject) => (options.profileDir ? join(options.profileDir, subject.name.replaceAll(' ', '-')) : undefined);
  const servers = await Promise.all(subjects.map((subject) => startServer(subject.name, subject.command, { pin: true, profileDir: profileDir(subject) })));
  const stopped = new Set<ServerProcess>();
  const stop = async (server: ServerProcess) => {
    if (stopped.has(server)) return;
    stopped.add(server);
    await server.stop();
  };
  const rows: Row[] = [];
  const perSecond = new Map<string, PhaseFigures>();
  /** Each subject's loaded rounds, in order: round r of every subject ran between its rounds r − 1 and r + 1. */
  const loadedRounds = new Map<string, PhaseFigures[]>();
  const runner = (index: number) => {
    const subject = subjects[index] as Subject;
    const server = servers[index] as ServerProcess;
    return (phase: Phase, prefix: string) => runPhase(phase, server, () => subject.slot(server.base, plan), prefix);
  };
  try {
    const warmFailed: number[] = [];
    const quietFigures: PhaseFigures[] = [];
    const rssBefore: number[] = [];
    for (const [index, subject] of subjects.entries()) {
      const run = runner(index);
      const warm = await run(plan.warmup, 'w');
      if (warm.failed) options.log(`${subject.name}: ${warm.failed} warm-up sessions failed: ${warm.firstError}`);
      warmFailed.push(warm.failed);
      quietFigures.push(await run(plan.quiet, 'q'));
      rssBefore.push(await (servers[index] as ServerProcess).rss());
      loadedRounds.set(subject.name, []);
    }
    // The loaded phase in rounds, the subjects taking turns, each round with its own session ids.
    const { rounds, ...whole } = plan.loaded;
    const oneRound: Phase = { ...whole, sessions: Math.ceil(whole.sessions / rounds), budgetMs: whole.budgetMs / rounds };
    for (let r = 0; r < rounds; r++) {
      for (const [index, subject] of subjects.entries()) {
        const figures = await runner(index)(oneRound, `l${r}-`);
        options.log(
          `${subject.name} round ${r + 1}: ${fixed(figures.perSecond, 0)}/s, p50 ${fixed(figures.p50, 1)} ms, p99 ${fixed(figures.p99, 1)} ms, ${figures.failed} failed, ${fixed(figures.seconds, 2)} s, server CPU ${fixed(figures.serverCpu, 0)} %, load CPU ${fixed(figures.loadCpu, 0)} %`,
        );
        loadedRounds.get(subject.name)?.push(figures);
      }
    }
    for (const [index, subject] of subjects.entries()) {
      const server = servers[index] as ServerProcess;
      const quiet = quietFigures[index] as PhaseFigures;
      const loaded = combined(loadedRounds.get(subject.name) ?? []);
      // Closed sockets and left peers are released in the server's next turns.
      await Bun.sleep(300);
      const rssAfter = await server.rss();
      const perCandidate = await subject.candidateCost?.(server.base, server, plan);
      await stop(server);
      for (const [name, figures] of [
        ['quiet', quiet],
        ['loaded', loaded],
      ] as const) {
        options.log(
          `${subject.name} ${name}: ${figures.completed} sessions, ${figures.failed} failed, p50 ${fixed(figures.p50, 2)} ms, p99 ${fixed(figures.p99, 2)} ms, ` +
            `${fixed(figures.perSecond, 0)}/s, server CPU ${fixed(figures.serverCpu, 0)} %, load CPU ${fixed(figures.loadCpu, 0)} %`,
        );
        if (figures.failed) options.log(`${subject.name} ${name}: first failure: ${figures.firstError}`);
      }
      if (options.smoke && quiet.failed + loaded.failed + (warmFailed[index] as number) > 0)
        throw new Error(`${subject.name}: sessions failed: ${quiet.firstError ?? loaded.firstError}`);
      perSecond.set(subject.name, loaded);
      const failures = (f: PhaseFigures) => (f.failed ? `, ${f.failed} failed` : '');
      const quietIn = `${plan.quiet.inFlight} in flight`;
      const loadedIn = `${plan.loaded.inFlight} in flight`;
      rows.push(
        { bench: BENCH, subject: subject.name, figure: `p50, ${quietIn}`, value: quiet.p50, unit: 'ms', note: `${quiet.completed} sessions${failures(quiet)}` },
        { bench: BENCH, subject: subject.name, figure: `p99, ${quietIn}`, value: quiet.p99, unit: 'ms', note: `load CPU ${fixed(quiet.loadCpu, 0)} %` },
        {
          bench: BENCH,
          subject: subject.name,
          figure: `p50, ${loadedIn}`,
          value: loaded.p50,
          unit: 'ms',
          note: `${loaded.completed} sessions in ${rounds} rounds${failures(loaded)}`,
        },
        { bench: BENCH, subject: subject.name, figure: `p99, ${loadedIn}`, value: loaded.p99, unit: 'ms' },
        {
          bench: BENCH,
          subject: subject.name,
          figure: `sessions/s, ${loadedIn}`,
          value: loaded.perSecond,
          unit: '/s',
          note:
            `server CPU ${fixed(loaded.serverCpu, 0)} %, ${fixed((loaded.serverCpu * 10) / loaded.perSecond, 2)} ms per session; ` +
            `load CPU ${fixed(loaded.loadCpu, 0)} %${shared ? ' on a shared CPU' : ''}; ` +
            `server RSS after GC ${fixed((rssBefore[index] as number) / 2 ** 20)} → ${fixed(rssAfter / 2 ** 20)} MiB`,
        },
      );
      if (perCandidate !== undefined) {
        options.log(`${subject.name}: ${fixed(perCandidate, 1)} µs of server CPU per candidate`);
        rows.push({
          bench: BENCH,
          subject: subject.name,
          figure: 'server CPU per candidate, 4 sent together',
          value: perCandidate,
          unit: 'µs',
          note: `${plan.candidateRounds} rounds of 4 to a reading peer, ${subject.name.endsWith('batched') ? 'in one batch' : 'one by one'}`,
        });
      }
    }
  } finally {
    await Promise.all(servers.map(stop));
  }
  const peerjs = perSecond.get('PeerJS server');
  /** The ratio in each round, against PeerJS's round of the same turn. */
  const roundRatios = (name: string) => {
    const theirs = loadedRounds.get('PeerJS server') ?? [];
    return (loadedRounds.get(name) ?? []).map((ours, r) => (ours.perSecond / (theirs[r]?.perSecond ?? Number.NaN)).toFixed(2)).join(' / ');
  };
  for (const name of ['switchboard SSE', 'switchboard WS', 'switchboard SSE batched', 'switchboard WS batched']) {
    const ours = perSecond.get(name);
    if (!ours || !peerjs) continue;
    rows.push({
      bench: BENCH,
      subject: `${name} ÷ PeerJS server`,
      figure: `sessions/s ratio, ${plan.loaded.inFlight} in flight`,
      value: ours.perSecond / peerjs.perSecond,
      unit: '×',
      // The goal is for the seed's transport, SSE; the WebSocket one and the batched ones are shown beside it.
      goal: name === 'switchboard SSE' ? { op: '>=', value: 1 } : undefined,
      note: `by server CPU per session ${((peerjs.serverCpu / peerjs.perSecond) * (ours.perSecond / ours.serverCpu)).toFixed(2)} ×; by round ${roundRatios(name)}`,
    });
  }
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean', default: false }, subjects: { type: 'string' }, profile: { type: 'string' } } });
  const names = values.subjects?.split(',').map((name) => SUBJECTS.find((subject) => subject.name.toLowerCase().includes(name.trim().toLowerCase()))?.name ?? name);
  const unknown = names?.filter((name) => !SUBJECTS.some((subject) => subject.name === name)) ?? [];
  if (unknown.length) throw new Error(`unknown subject ${unknown.join(', ')}; choose from ${SUBJECTS.map((subject) => subject.name).join(', ')}`);
  pinLoad((line) => console.error(line));
  const rows = await benchSessionSetup({ smoke: values.smoke, subjects: names, profileDir: values.profile, log: (line) => console.error(line) });
  console.log(formatRows(rows));
  process.exit(0);
}
