// Batches: POST /message with a JSON array, and a WebSocket frame that is one, on one process and on a cluster.
import { expect, test } from 'bun:test';
import { bearer } from '../cluster/helpers';
import type { SseConnection } from '../sse-client';
import { contractBackends, eachBackend, type Server, until } from './backends';

const backends = contractBackends();
const candidate = (n: number, target = 'b') => ({ type: 'ice-candidate', payload: { candidate: `candidate:${n}`, sdpMid: '0' }, target });
const from = (ip: string) => ({ 'x-forwarded-for': ip });
const SENT = { status: 200, message: 'Message sent' };
const QUEUED = { status: 202, message: 'Message queued' };

/** The candidates `stream` reads, by number, once `count` of them have come. */
async function candidates(stream: SseConnection, count: number): Promise<number[]> {
  const read: number[] = [];
  while (read.length < count) {
    const e = await stream.next((e) => e.json.type === 'ice-candidate');
    read.push(Number(String((e.json.payload as { candidate: string }).candidate).split(':')[1]));
  }
  return read;
}

/** A session with `a` and `b`, `b` reading its stream. */
async function pair(s: Server): Promise<SseConnection> {
  await s.register('s', 'a');
  await s.register('s', 'b');
  return s.events('s', 'b');
}

eachBackend(backends, (backend) => {
  const sent = backend.differences.sent;
  test('a batch is answered 200 with one result per message, and delivered in order between single messages', async () => {
    const s = await backend.start();
    const stream = await pair(s);
    expect((await s.message('s', 'a', candidate(0))).status).toBe(200);
    const res = await s.message(
      's',
      'a',
      [1, 2, 3, 4, 5].map((n) => candidate(n)),
    );
    expect(res.status).toBe(200);
    expect(res.body.results).toHaveLength(5);
    // In a cluster 200 says the instance holding b's stream took it; it may have written it or not yet.
    for (const result of res.body.results) expect(sent === 'written' ? [SENT] : [SENT, QUEUED]).toContainEqual(result);
    expect((await s.message('s', 'a', candidate(6))).status).toBe(200);
    expect(await candidates(stream, 7)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    // Each message is an event of its own, with its own id, as a single message is.
    const ids = stream.events.filter((e) => e.json.type === 'ice-candidate').map((e) => Number(e.id));
    expect(ids).toEqual(ids.map((_, i) => (ids[0] as number) + i));
    expect(stream.events.at(-1)?.json).toEqual({ ...candidate(6), target: undefined, senderId: 'a' });
  });

  test('a batch of one message, or of 32, is a batch; a peer not reading gets each held (202)', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    await s.register('s', 'b');
    expect((await s.message('s', 'a', [candidate(1)])).body).toEqual({ results: [QUEUED] });
    const full = await s.message(
      's',
      'a',
      Array.from({ length: 32 }, (_, n) => candidate(n)),
    );
    expect(full.status).toBe(200);
    expect(full.body.results).toEqual(Array.from({ length: 32 }, () => QUEUED));
    const stream = await s.events('s', 'b');
    expect(await candidates(stream, 33)).toEqual([1, ...Array.from({ length: 32 }, (_, n) => n)]);
  });

  test.each([
    ['an empty batch', [], 'the batch is empty'],
    ['33 messages', Array.from({ length: 33 }, (_, n) => candidate(n)), 'at most 32'],
    ['a message that is not an object', [candidate(1), 'ice', candidate(2)], 'body.1'],
    ['a message without a type', [candidate(1), { payload: 1, target: 'b' }], 'body.1.type'],
    ['a message with a bad target', [{ type: 'x', target: '' }], 'body.0.target'],
    ['nested batches', [[candidate(1)]], 'body.0'],
  ])('%s: 400 invalid_request naming it, and nothing of the batch is sent', async (_, body, words) => {
    const s = await backend.start();
    const stream = await pair(s);
    const res = await s.message('s', 'a', body);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'invalid_request', message: expect.stringContaining(words) });
    expect((await s.message('s', 'a', candidate(9))).status).toBe(200);
    expect(await candidates(stream, 1)).toEqual([9]);
  });

  test('deeply nested bodies, batch or not, are refused 400 naming the field, and the server goes on', async () => {
    const s = await backend.start();
    await pair(s);
    for (const body of ['['.repeat(20_000) + ']'.repeat(20_000), `[${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}]`, `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`]) {
      const res = await s.req('POST', '/message/s/a', body);
      expect(res.status).toBe(400);
      expect(res.body.message).toMatch(/^body(\.0)?(\.type)?: /);
    }
    expect((await s.message('s', 'a', [candidate(1)])).status).toBe(200);
  });

  test('a batch over 64 KiB as a whole is refused 413', async () => {
    const s = await backend.start();
    await pair(s);
    const big = { type: 'offer', payload: 'x'.repeat(3000), target: 'b' };
    const res = await s.message(
      's',
      'a',
      Array.from({ length: 30 }, () => big),
    );
    expect(res.status).toBe(413);
    expect(res.body.error).toBe('payload_too_large');
  });

  test('mixed messages: each is refused or sent on its own, as it would be alone, and the others keep their order', async () => {
    const s = await backend.start();
    const stream = await pair(s);
    const res = await s.message('s', 'a', [candidate(1), candidate(2, 'ghost'), { type: 'ping', target: 'b' }, candidate(3, 'a'), { type: 'hello' }, candidate(4)]);
    expect(res.status).toBe(200);
    const results = res.body.results as Record<string, unknown>[];
    expect(results.map((r) => r.status)).toEqual([results[0]?.status, 404, 400, 400, results[4]?.status, results[5]?.status]);
    expect(results[1]).toEqual({ status: 404, error: 'target_not_found', message: 'peer ghost is not in session s' });
    expect(results[2]).toMatchObject({ status: 400, error: 'reserved_type' });
    expect(results[3]).toMatchObject({ status: 400, error: 'invalid_request', message: 'target is the sender itself' });
    for (const i of [0, 4, 5]) expect([200, 202]).toContain(results[i]?.status as number);
    const order = [];
    for (let i = 0; i < 3; i++) order.push((await stream.next((e) => e.json.senderId === 'a')).json.type);
    expect(order).toEqual(['ice-candidate', 'hello', 'ice-candidate']);
  });

  test('an unknown sender or session refuses the batch whole (404)', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    expect((await s.message('s', 'ghost', [candidate(1, 'a')])).body.error).toBe('peer_not_found');
    expect((await s.message('nope', 'a', [candidate(1)])).body.error).toBe('session_not_found');
  });

  test("the sender's token is checked once, and a refused batch costs its rate nothing", async () => {
    const s = await backend.start({ authMode: 'token', peerMessageRatePerS: 1, peerMessageBurst: 2 });
    const a = (await s.register('s', 'a')).body.token as string;
    const b = (await s.register('s', 'b')).body.token as string;
    const path = '/message/s/a';
    expect((await s.req('POST', path, [candidate(1)])).status).toBe(401);
    expect((await s.req('POST', path, [candidate(1), candidate(2)], bearer(b))).status).toBe(403);
    const res = await s.req('POST', path, [candidate(1), candidate(2)], bearer(a));
    expect(res.body.results.map((r: { status: number }) => r.status)).toEqual([202, 202]);
  });

  test("each message counts against the peer's rate: past the burst the rest are refused 429, each with Retry-After", async () => {
    const s = await backend.start({ peerMessageRatePerS: 2, peerMessageBurst: 3 });
    await s.register('s', 'a');
    await s.register('s', 'b');
    const res = await s.message(
      's',
      'a',
      [1, 2, 3, 4, 5].map((n) => candidate(n)),
    );
    expect(res.status).toBe(200);
    expect(res.body.results.slice(0, 3)).toEqual([QUEUED, QUEUED, QUEUED]);
    for (const refused of res.body.results.slice(3)) {
      expect(refused).toEqual({ status: 429, error: 'rate_limited', message: expect.stringContaining('peer a'), retryAfter: 1 });
    }
    // A single message now finds the bucket as empty as the batch left it.
    expect((await s.message('s', 'a', candidate(6))).status).toBe(429);
  });

  test("each message counts against the address's rate: the batch's first before its body is read, the others then", async () => {
    const s = await backend.start({ trustProxy: 1, messageRatePerS: 1, messageBurst: 3, peerMessageRatePerS: 0 });
    await s.register('s', 'a');
    await s.register('s', 'b');
    const headers = { headers: from('198.51.100.7') };
    const res = await s.message(
      's',
      'a',
      [1, 2, 3, 4].map((n) => candidate(n)),
      headers,
    );
    expect(res.body.results.map((r: { status: number }) => r.status)).toEqual([202, 202, 202, 429]);
    expect(res.body.results[3]).toMatchObject({ error: 'rate_limited', message: expect.stringContaining('this address') });
    const refused = await s.message('s', 'a', [candidate(5)], headers);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('1');
  });

  test("each message counts against the target's queue: past MAX_QUEUE the rest are refused 429 queue_full, nothing dropped", async () => {
    const s = await backend.start({ maxQueue: 3 });
    await s.register('s', 'a');
    await s.register('s', 'b');
    const res = await s.message(
      's',
      'a',
      [1, 2, 3, 4].map((n) => candidate(n)),
    );
    expect(res.body.results.slice(0, 3)).toEqual([QUEUED, QUEUED, QUEUED]);
    expect(res.body.results[3]).toMatchObject({ status: 429, error: 'queue_full', retryAfter: 1 });
    const stream = await s.events('s', 'b');
    expect(await candidates(stream, 3)).toEqual([1, 2, 3]);
  });

  test('a WebSocket frame may be a batch: one ack per message, with its id, in order; the events in order', async () => {
    const s = await backend.start();
    const stream = await pair(s);
    const a = await s.ws('s', 'a');
    a.send(JSON.stringify({ ...candidate(0), id: 'single' }));
    a.send(JSON.stringify([{ ...candidate(1), id: 1 }, candidate(2, 'ghost'), { ...candidate(3), id: 'three' }]));
    a.send(JSON.stringify({ ...candidate(4), id: 4 }));
    await until(() => a.frames.filter((f) => 'ack' in f).length >= 5, 'the acks');
    const acks = a.frames.filter((f) => 'ack' in f);
    expect(acks.map((f) => f.ack)).toEqual(['single', 1, null, 'three', 4]);
    expect(acks[2]).toMatchObject({ status: 404, error: 'target_not_found' });
    for (const i of [0, 1, 3, 4]) expect([200, 202]).toContain(acks[i]?.status as number);
    expect(await candidates(stream, 4)).toEqual([0, 1, 3, 4]);
  });

  test('a WebSocket batch with a malformed message is refused whole, each message answered; a wrong length once', async () => {
    const s = await backend.start();
    const stream = await pair(s);
    const a = await s.ws('s', 'a');
    a.send(
      JSON.stringify([
        { ...candidate(1), id: 1 },
        { id: 2, type: 7 },
      ]),
    );
    a.send('[]');
    a.send(JSON.stringify(Array.from({ length: 33 }, (_, n) => ({ ...candidate(n), id: n }))));
    a.send(JSON.stringify({ ...candidate(9), id: 9 }));
    await until(() => a.frames.some((f) => f.ack === 9), 'the acks');
    const acks = a.frames.filter((f) => 'ack' in f);
    expect(acks.map((f) => [f.ack, f.status])).toEqual([
      [1, 400],
      [2, 400],
      [null, 400],
      [null, 400],
      [9, acks[4]?.status],
    ]);
    expect(acks[0]?.message).toContain('frame.1.type');
    expect(acks[2]?.message).toContain('empty');
    expect(acks[3]?.message).toContain('at most 32');
    expect(await candidates(stream, 1)).toEqual([9]);
  });

  test("a WebSocket batch counts each message against the peer's rate", async () => {
    const s = await backend.start({ peerMessageRatePerS: 1, peerMessageBurst: 2 });
    await pair(s);
    const a = await s.ws('s', 'a');
    a.send(JSON.stringify([1, 2, 3].map((n) => ({ ...candidate(n), id: n }))));
    await until(() => a.frames.some((f) => f.ack === 3), 'the acks');
    expect(a.frames.find((f) => f.ack === 3)).toMatchObject({ status: 429, error: 'rate_limited', retryAfter: 1 });
    expect(a.frames.filter((f) => f.status === 429)).toHaveLength(1);
  });
});
