// Relay sessions under abuse, against a real server process: registrations that never open a stream,
// malformed and oversized candidates, candidates past the cap, ice-restart floods and broken answers,
// while a real relay session beside them (a werift publisher of synthetic VP8 and a werift viewer) keeps
// receiving video. Afterwards memory, UDP sockets and the relay's connections are back where they were.
// Seeded: FUZZ_SEED=<n> replays the set of messages.
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { type BenchPeer, type BenchViewer, benchPublisher, benchViewer } from '../../bench/relay-peers';
import { MAX_CANDIDATE_LENGTH, MAX_REMOTE_CANDIDATES } from '../../src/relay/messages';
import { type Child, type Memory, memory, Rng, spawnFuzzServer } from '../fixtures/fuzz-child';
import { ofType, openEvents, type SseConnection } from '../sse-client';

const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
/** Abusive peers that do open a stream (and so get a connection), per round. */
const ABUSERS = 8;
/** Registrations without a stream, from IDLE_ADDRESSES addresses, past MAX_RELAY_PEERS. */
const IDLE_REGISTRATIONS = 150;
const IDLE_ADDRESSES = 15;
const MAX_RELAY_PEERS = 100;
const MESSAGES = 4000;
const CONCURRENCY = 8;

let child: Child;
let publisher: (BenchPeer & { packets: () => number }) | undefined;
let viewer: BenchViewer | undefined;
const streams: SseConnection[] = [];

beforeAll(async () => {
  child = await spawnFuzzServer({ RELAY_HOST_IPS: '127.0.0.1', TRUST_PROXY: '1', MAX_RELAY_PEERS: String(MAX_RELAY_PEERS) });
}, 30_000);

afterAll(async () => {
  for (const s of streams.splice(0)) s.close();
  await viewer?.close().catch(() => undefined);
  await publisher?.close().catch(() => undefined);
  child?.proc.kill('SIGKILL');
  await child?.proc.exited;
});

interface Answer {
  status: number;
  error?: string;
  retryAfter: string | null;
}

async function call(method: string, path: string, ip: string, body?: unknown): Promise<Answer> {
  const res = await fetch(`${child.url}${path}`, {
    method,
    headers: { 'x-forwarded-for': ip },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  let error: string | undefined;
  try {
    error = (JSON.parse(text) as { error?: string }).error;
  } catch {
    // Not JSON: left undefined, which the checks below count as wrong.
  }
  return { status: res.status, error, retryAfter: res.headers.get('retry-after') };
}

/** Every answer of the run, by what was sent: status and error code. */
class Tally {
  readonly answers = new Map<string, Map<string, number>>();
  readonly wrong: string[] = [];
  add(kind: string, answer: Answer): void {
    const key = `${answer.status} ${answer.error ?? ''}`.trim();
    const byKind = this.answers.get(kind) ?? new Map<string, number>();
    byKind.set(key, (byKind.get(key) ?? 0) + 1);
    this.answers.set(kind, byKind);
    // The one deliberate 5xx is relay_full; every refusal is a JSON error.
    if ((answer.status >= 500 && answer.error !== 'relay_full') || (answer.status >= 400 && !answer.error)) this.wrong.push(`${kind}: ${key}`);
  }
  count(kind: string, key: string): number {
    return this.answers.get(kind)?.get(key) ?? 0;
  }
  toJSON() {
    return Object.fromEntries([...this.answers].map(([kind, m]) => [kind, Object.fromEntries(m)]));
  }
}

interface Abuser {
  session: string;
  ip: string;
  stream: SseConnection;
}

/** A peer that registers a relay session of its own and opens its stream: it gets a connection and an offer. */
async function abuser(round: string, i: number): Promise<Abuser> {
  const session = `abuse-${round}-${i}`;
  const ip = `10.66.${i}.1`;
  const registered = await call('POST', `/register/${session}/p?mode=relay`, ip);
  expect(registered.status).toBe(200);
  const stream = await openEvents(`${child.url}/events/${session}/p`, { headers: { 'x-forwarded-for': ip } });
  streams.push(stream);
  await stream.next(ofType('offer', 'switchboard'), 15_000);
  return { session, ip, stream };
}

const plausibleCandidate = (rng: Rng, n: number) => ({
  candidate: `candidate:${n} 1 udp ${2122260223 - rng.int(1000)} 192.0.2.${1 + rng.int(250)} ${1024 + rng.int(60000)} typ host`,
  sdpMid: '0',
  sdpMLineIndex: 0,
});

/** One hostile message to switchboard, and what it is. */
function hostile(rng: Rng, n: number): { kind: string; body: unknown } {
  const message = (type: string, payload?: unknown) => ({ type, target: 'switchboard', payload });
  return rng.pick<() => { kind: string; body: unknown }>([
    () => ({
      kind: 'oversized',
      body: message('ice-candidate', { candidate: `candidate:1 1 udp 1 192.0.2.1 9 typ host ${'x'.repeat(MAX_CANDIDATE_LENGTH + rng.int(60_000))}`, sdpMid: '0' }),
    }),
    () => ({ kind: 'oversized', body: message('ice-candidate', { ...plausibleCandidate(rng, n), sdpMid: 'm'.repeat(65 + rng.int(30_000)) }) }),
    () => ({ kind: 'oversized', body: message('ice-candidate', { ...plausibleCandidate(rng, n), usernameFragment: 'u'.repeat(257 + rng.int(30_000)) }) }),
    () => ({ kind: 'malformed', body: message('ice-candidate', { candidate: rng.pick([7, {}, [], true]) }) }),
    () => ({ kind: 'malformed', body: message('ice-candidate', { ...plausibleCandidate(rng, n), sdpMLineIndex: rng.pick([-1, 1e9, 1.5, 256]) }) }),
    () => ({ kind: 'malformed', body: message('ice-candidate', rng.pick(['a string', 42, [1, 2]])) }),
    () => ({ kind: 'malformed', body: message(rng.pick(['offer', 'bye', 'x'.repeat(64)]), { sdp: 'v=0\r\n' }) }),
    () => ({ kind: 'malformed', body: message('answer', { sdp: rng.pick([7, 'no sdp', '']) }) }),
    () => ({ kind: 'broken-answer', body: message('answer', { type: 'answer', sdp: `v=0\r\n${'a=junk\r\n'.repeat(rng.int(2000))}` }) }),
    () => ({ kind: 'candidate', body: message('ice-candidate', plausibleCandidate(rng, n)) }),
    () => ({ kind: 'candidate', body: message('ice-candidate', plausibleCandidate(rng, n)) }),
    () => ({ kind: 'end-of-candidates', body: message('ice-candidate', rng.pick([null, { candidate: '' }])) }),
    () => ({ kind: 'restart', body: message('ice-restart') }),
  ])();
}

/** Sends `count` hostile messages from the abusers, CONCURRENCY at once. */
async function flood(rng: Rng, abusers: Abuser[], count: number, tally: Tally): Promise<void> {
  let issued = 0;
  const worker = async () => {
    while (issued < count) {
      const n = issued++;
      const from = rng.pick(abusers);
      const { kind, body } = hostile(rng, n);
      tally.add(kind, await call('POST', `/message/${from.session}/p`, from.ip, body));
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

/** Waits until the viewer has received `more` packets beyond what it had. */
async function keepsReceiving(more: number, timeoutMs = 20_000): Promise<void> {
  const from = viewer?.counts().received ?? 0;
  const deadline = Date.now() + timeoutMs;
  while ((viewer?.counts().received ?? 0) < from + more && Date.now() < deadline) await Bun.sleep(50);
  expect(viewer?.counts().received ?? 0).toBeGreaterThanOrEqual(from + more);
}

/** Leaves every session of a round (streams first), then waits until the process holds what it held before. */
async function endRound(abusers: Abuser[], sessions: string[], expected: { udp: number; connections: number }): Promise<Memory> {
  for (const a of abusers) a.stream.close();
  for (const session of [...abusers.map((a) => a.session), ...sessions]) await call('DELETE', `/session/${session}`, '10.66.255.1');
  const deadline = Date.now() + 15_000;
  let now = await memory(child);
  while ((now.udp !== expected.udp || now.relay?.connections !== expected.connections) && Date.now() < deadline) {
    await Bun.sleep(100);
    now = await memory(child);
  }
  return now;
}

/** One round of abuse: abusers with streams, registrations without, hostile messages. */
async function round(
  name: string,
  index: number,
  rng: Rng,
  messages: number,
  tally: Tally,
  during?: (phase: string) => Promise<void>,
): Promise<{ abusers: Abuser[]; idle: string[] }> {
  const abusers: Abuser[] = [];
  for (let i = 0; i < ABUSERS; i++) abusers.push(await abuser(name, i));
  const idle: string[] = [];
  // One address past MAX_RELAY_PEERS_PER_IP (20 by default), a new one each round (REGISTER_BURST is 30).
  for (let i = 0; i < 25; i++) {
    const session = `one-address-${name}-${i}`;
    idle.push(session);
    tally.add('one-address', await call('POST', `/register/${session}/p?mode=relay`, `10.78.${index}.1`));
  }
  // Then many addresses, past MAX_RELAY_PEERS.
  for (let i = 0; i < IDLE_REGISTRATIONS; i++) {
    const session = `idle-${name}-${i}`;
    idle.push(session);
    tally.add('idle-registration', await call('POST', `/register/${session}/p?mode=relay`, `10.77.${i % IDLE_ADDRESSES}.1`));
  }
  await during?.('registered');
  // A candidate flood and a restart flood, in order, then the mix.
  const [first, second] = abusers as [Abuser, Abuser];
  for (let n = 0; n < MAX_REMOTE_CANDIDATES + 6; n++) {
    tally.add(
      'candidate-flood',
      await call('POST', `/message/${first.session}/p`, first.ip, { type: 'ice-candidate', target: 'switchboard', payload: plausibleCandidate(rng, n) }),
    );
  }
  for (let n = 0; n < 10; n++) tally.add('restart-flood', await call('POST', `/message/${second.session}/p`, second.ip, { type: 'ice-restart', target: 'switchboard' }));
  await flood(rng, abusers, messages, tally);
  return { abusers, idle };
}

test('relay abuse beside a live relay session: the video keeps arriving, every refusal is a clear 4xx at once, memory and sockets come back', async () => {
  console.log(`relay fuzz seed: ${SEED} (FUZZ_SEED=${SEED} repeats this run)`);
  const rng = new Rng(SEED);

  const idleServer = await memory(child);
  // The live session: a publisher of synthetic VP8 at 500 kbit/s and a viewer, both werift.
  publisher = await benchPublisher(child.url, 'live', 500);
  viewer = await benchViewer(child.url, 'live', 'viewer');
  await keepsReceiving(100, 30_000);
  const live = await memory(child);
  expect(live.relay).toMatchObject({ sessions: 1, connections: 2 });
  // Sockets per connection: one per address gathered on (RELAY_HOST_IPS adds 127.0.0.1).
  const perConnection = (live.udp - idleServer.udp) / 2;
  expect(perConnection).toBeGreaterThanOrEqual(1);

  // A warm-up round, so that the baseline has every code path loaded; then the measured round.
  const warm = new Tally();
  const warmed = await round('warm', 1, rng, 200, warm);
  await endRound(warmed.abusers, warmed.idle, { udp: live.udp, connections: 2 });
  const baseline = await memory(child);

  const tally = new Tally();
  let registered: Memory | undefined;
  const started = performance.now();
  const receivedBefore = viewer.counts().received;
  const { abusers, idle } = await round('run', 2, rng, MESSAGES, tally, async () => {
    registered = await memory(child);
  });
  const receivedDuring = viewer.counts().received - receivedBefore;
  const seconds = (performance.now() - started) / 1000;
  await keepsReceiving(100);
  const after = await endRound(abusers, idle, { udp: baseline.udp, connections: 2 });
  await keepsReceiving(100);
  console.log(`relay fuzz: ${seconds.toFixed(1)} s, answers ${JSON.stringify(tally)}`);
  console.log(
    `relay fuzz: viewer got ${receivedDuring} packets during the abuse; UDP sockets ${baseline.udp} → ${registered?.udp} with ${IDLE_REGISTRATIONS + 25} registrations without a stream → ${after.udp}; ` +
      `heap after GC ${(baseline.heap / 2 ** 20).toFixed(1)} → ${(after.heap / 2 ** 20).toFixed(1)} MiB, RSS ${(baseline.rss / 2 ** 20).toFixed(0)} → ${(after.rss / 2 ** 20).toFixed(0)} MiB`,
  );

  // No 5xx but relay_full, no refusal without its JSON error, in either round.
  expect([...warm.wrong, ...tally.wrong]).toEqual([]);
  // Registrations without a stream: none made a connection or opened a socket; the caps refused the rest.
  expect(registered?.udp).toBe(baseline.udp + ABUSERS * perConnection);
  expect(registered?.relay?.connections).toBe(2 + ABUSERS);
  expect(tally.count('idle-registration', '503 relay_full')).toBeGreaterThan(0);
  expect(tally.count('idle-registration', '200') + 20 + ABUSERS + 2).toBe(MAX_RELAY_PEERS);
  expect(tally.count('one-address', '429 too_many_relay_peers')).toBe(5);
  // Candidates: the oversized ones are 400s, the cap refuses past 64 (never acknowledged, then dropped).
  expect([...(tally.answers.get('oversized')?.keys() ?? [])].filter((k) => k !== '429 rate_limited')).toEqual(['400 invalid_request']);
  expect(tally.count('candidate-flood', '200')).toBe(MAX_REMOTE_CANDIDATES);
  expect(tally.count('candidate-flood', '429 too_many_candidates')).toBe(6);
  expect(tally.count('restart-flood', '200')).toBe(3);
  expect(tally.count('restart-flood', '429 rate_limited')).toBe(7);
  // The video went on through the abuse and after it.
  expect(receivedDuring).toBeGreaterThan(0);
  // Sockets and connections back to the live session's own; memory back near the baseline.
  expect(after.udp).toBe(baseline.udp);
  expect(after.relay).toMatchObject({ sessions: 1, connections: 2 });
  expect(after.heap - baseline.heap).toBeLessThan(8 * 2 ** 20);
  expect(after.rss - baseline.rss).toBeLessThan(256 * 2 ** 20);
  expect(child.proc.exitCode).toBeNull();
  expect(child.output()).not.toContain('internal error');
}, 180_000);
