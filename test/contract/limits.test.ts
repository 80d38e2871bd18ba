// What one client address or one peer may hold or send: rate limits, stream caps, byte budgets, the
// per-address registration caps; on one process and on a cluster. The token buckets and MAX_STREAMS_PER_IP
// count per instance (see `differences.rateLimits`): those tests send one address's requests to one
// instance, and one test shows what another instance answers.
import { expect, test } from 'bun:test';
import { contractBackends, eachBackend, FLOOD_TIMEOUT_MS, until } from './backends';

const backends = contractBackends();
const from = (ip: string) => ({ 'x-forwarded-for': ip });

const BUDGET = 1_048_576;
const PEER_BUDGET = 131_072;
/** Everything else out of the way: the byte budgets are what is tested. */
const budgets = { maxEventBytes: BUDGET, maxPeerEventBytes: PEER_BUDGET, maxQueue: 256, registerRatePerMin: 0, messageRatePerS: 0, peerMessageRatePerS: 0 };

eachBackend(backends, (backend) => {
  test('POST /register per client address: 429 rate_limited with Retry-After once the burst is spent; other addresses unaffected; refills with time', async () => {
    const s = await backend.start({ trustProxy: 1, registerRatePerMin: 6, registerBurst: 2 });
    expect((await s.register('s', 'a', { at: 0, headers: from('198.51.100.1') })).status).toBe(200);
    expect((await s.register('s', 'b', { at: 0, headers: from('198.51.100.1') })).status).toBe(200);
    const refused = await s.register('s', 'c', { at: 0, headers: from('198.51.100.1') });
    expect(refused.status).toBe(429);
    expect(refused.body.error).toBe('rate_limited');
    expect(refused.headers.get('retry-after')).toBe('10');
    expect((await s.register('s', 'c', { at: 0, headers: from('198.51.100.2') })).status).toBe(200);
    await s.advance(10_000);
    expect((await s.register('s', 'c', { at: 0, headers: from('198.51.100.1') })).status).toBe(200);
  });

  test('the rate limits count per instance: one process is one, a cluster has one per instance', async () => {
    const s = await backend.start({ trustProxy: 1, registerRatePerMin: 6, registerBurst: 1 });
    expect((await s.register('s', 'a', { at: 0, headers: from('198.51.100.1') })).status).toBe(200);
    const elsewhere = await s.register('s', 'b', { at: 1, headers: from('198.51.100.1') });
    expect(elsewhere.status).toBe(s.differences.rateLimits === 'instance' ? 200 : 429);
  });

  test('REGISTER_RATE_PER_MIN=0 turns the limit off', async () => {
    const s = await backend.start({ trustProxy: 1, registerRatePerMin: 0, registerBurst: 1 });
    for (let i = 0; i < 50; i++) expect((await s.register(`s${i}`, 'a', { headers: from('198.51.100.1') })).status).toBe(200);
  });

  test('POST /message per client address, before the body is read', async () => {
    const s = await backend.start({ trustProxy: 1, messageRatePerS: 1, messageBurst: 2 });
    await s.register('s', 'a');
    await s.register('s', 'b');
    const body = { type: 'offer', target: 'b' };
    expect((await s.message('s', 'a', body, { headers: from('198.51.100.1') })).status).toBe(202);
    expect((await s.message('s', 'a', 'not even json', { headers: from('198.51.100.1') })).status).toBe(400);
    const refused = await s.message('s', 'a', 'not even json', { headers: from('198.51.100.1') });
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('1');
  });

  test('POST /message per peer, wherever it sends from', async () => {
    const s = await backend.start({ trustProxy: 1, peerMessageRatePerS: 2, peerMessageBurst: 3 });
    await s.register('s', 'a');
    await s.register('s', 'b');
    const body = { type: 'x', target: 'b' };
    for (let i = 0; i < 3; i++) expect((await s.message('s', 'a', body, { headers: from(`198.51.100.${i}`) })).status).toBe(202);
    const refused = await s.message('s', 'a', body, { headers: from('198.51.100.9') });
    expect(refused.status).toBe(429);
    expect(refused.body.message).toContain('peer a');
    // The other peer has its own budget.
    expect((await s.message('s', 'b', { type: 'x', target: 'a' })).status).toBe(202);
    await s.advance(500);
    expect((await s.message('s', 'a', body)).status).toBe(202);
  });

  test('MAX_STREAMS_PER_IP counts the socket address; a closed stream frees its slot', async () => {
    const s = await backend.start({ maxStreamsPerIp: 2 });
    for (const p of ['a', 'b', 'c']) await s.register('s', p);
    const first = await s.events('s', 'a', { at: 0 });
    await s.events('s', 'b', { at: 0 });
    const third = await s.call('GET', '/events/s/c', undefined, {}, 0);
    expect(third.status).toBe(429);
    expect(third.body).toMatchObject({ error: 'too_many_streams' });
    expect(third.headers.get('retry-after')).toBeTruthy();
    // X-Forwarded-For is not believed without TRUST_PROXY.
    expect((await s.call('GET', '/events/s/c', undefined, from('203.0.113.9'), 0)).status).toBe(429);
    first.close();
    // The server notices the disconnect on its own time: ask again until the slot is free.
    await until(async () => {
      const res = await fetch(`${s.url(0)}/events/s/c`);
      await res.body?.cancel();
      return res.status === 200;
    }, 'a free slot');
  });

  test('a refused stream (unknown peer) takes no slot', async () => {
    const s = await backend.start({ maxStreamsPerIp: 1 });
    for (let i = 0; i < 5; i++) expect((await s.call('GET', '/events/s/nobody', undefined, {}, 0)).status).toBe(404);
    await s.register('s', 'a');
    await s.register('s', 'b');
    for (let i = 0; i < 5; i++) expect((await s.call('GET', '/events/s/a', undefined, { 'last-event-id': 'x' }, 0)).status).toBe(400);
    const stream = await s.events('s', 'a', { at: 0 });
    expect(stream.status).toBe(200);
  });

  test('with TRUST_PROXY=1 the forwarded address counts, so clients behind one proxy are told apart', async () => {
    const s = await backend.start({ maxStreamsPerIp: 1, trustProxy: 1 });
    for (const p of ['a', 'b']) await s.register('s', p);
    await s.events('s', 'a', { at: 0, headers: from('203.0.113.1') });
    const second = await s.events('s', 'b', { at: 0, headers: from('203.0.113.2') });
    expect(second.status).toBe(200);
  });

  test(
    'one address with many peers and large messages cannot make the server hold more than MAX_EVENT_BYTES',
    async () => {
      const s = await backend.start(budgets);
      const payload = 'x'.repeat(60_000);
      // 40 peers that never read, in 4 sessions, and a sender in each.
      for (let k = 0; k < 4; k++) {
        expect((await s.register(`s${k}`, 'sender')).status).toBe(200);
        for (let p = 0; p < 10; p++) expect((await s.register(`s${k}`, `p${p}`)).status).toBe(200);
      }
      const answers: Record<number, number> = {};
      const refusals = new Set<string>();
      for (let round = 0; round < 3; round++) {
        for (let k = 0; k < 4; k++) {
          for (let p = 0; p < 10; p++) {
            const res = await s.message(`s${k}`, 'sender', { type: 'blob', target: `p${p}`, payload });
            answers[res.status] = (answers[res.status] ?? 0) + 1;
            if (res.status === 429) refusals.add(res.body.error);
          }
        }
      }
      // 120 × 60 kB asked for, about 7 MB: what fits in 1 MiB was queued (16 or 17 of them, next to the
      // small new-peer events), the rest refused as queue_full.
      expect(answers[202]).toBeGreaterThanOrEqual(16);
      expect((answers[202] ?? 0) * 60_000).toBeLessThanOrEqual(BUDGET);
      expect(answers[429]).toBe(120 - (answers[202] ?? 0));
      expect([...refusals]).toEqual(['queue_full']);
    },
    FLOOD_TIMEOUT_MS,
  );

  test('a peer holds at most MAX_PEER_EVENT_BYTES; once it reads, it can be sent to again', async () => {
    const s = await backend.start(budgets);
    await s.register('s', 'sender');
    await s.register('s', 'target');
    const payload = 'y'.repeat(60_000);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await s.message('s', 'sender', { type: 'blob', target: 'target', payload })).status);
    expect(statuses).toEqual([202, 202, 429, 429]);
    const refused = await s.message('s', 'sender', { type: 'blob', target: 'target', payload });
    expect(refused.body.message).toContain('bytes of undelivered events');
    // Reading frees the room: the written events stay for resume only while there is room for them.
    const stream = await s.events('s', 'target');
    await stream.next((e) => e.json.type === 'blob');
    await stream.next((e) => e.json.type === 'blob');
    expect((await s.message('s', 'sender', { type: 'blob', target: 'target', payload })).status).toBe(200);
    expect((await s.message('s', 'sender', { type: 'blob', target: 'target', payload })).status).toBe(200);
  });

  test('past MAX_PEER_EVENT_BYTES the events kept for resume go oldest first, as many as the new one needs', async () => {
    const s = await backend.start(budgets);
    await s.register('s', 'sender');
    await s.register('s', 'target');
    const stream = await s.events('s', 'target');
    // A hundred small events, read and kept for resume, then one that needs over thirty of them gone.
    for (let i = 0; i < 100; i++) expect((await s.message('s', 'sender', { type: 'small', target: 'target', payload: `${i}:${'s'.repeat(1_000)}` })).status).toBe(200);
    const small = await Promise.all(Array.from({ length: 100 }, (_, i) => stream.next((e) => e.json.type === 'small' && String(e.json.payload).startsWith(`${i}:`))));
    expect((await s.message('s', 'sender', { type: 'big', target: 'target', payload: 'b'.repeat(60_000) })).status).toBe(200);
    const big = await stream.next((e) => e.json.type === 'big');
    // The rule: oldest first, until the bytes freed make room for the new event.
    const sizes = small.map((e) => Buffer.byteLength(e.data));
    let excess = sizes.reduce((sum, size) => sum + size, 0) + Buffer.byteLength(big.data) - PEER_BUDGET;
    let dropped = 0;
    while (excess > 0) excess -= sizes[dropped++] as number;
    expect(dropped).toBeGreaterThan(16);
    const firstKept = Number((small[dropped] as (typeof small)[number]).id);
    const gap = await s.call('GET', '/events/s/target', undefined, { 'last-event-id': String(firstKept - 2) });
    expect([gap.status, gap.body.error]).toEqual([409, 'resume_gap']);
    const resumed = await s.events('s', 'target', { lastEventId: String(firstKept - 1) });
    expect(Number((await resumed.next()).id)).toBe(firstKept);
  });

  test('past MAX_SESSIONS_PER_IP and MAX_PEERS_PER_IP, POST /register answers 429; leaving, timing out, takeover and close give room back', async () => {
    const s = await backend.start({ maxSessionsPerIp: 2, maxPeersPerIp: 3, registerRatePerMin: 0, peerTimeoutMs: 10_000 });
    expect((await s.register('a', '1')).status).toBe(200);
    expect((await s.register('b', '1')).status).toBe(200);
    const third = await s.register('c', '1', { at: 2 });
    expect(third.status).toBe(429);
    expect(third.body).toEqual({ error: 'too_many_sessions', message: expect.stringContaining('this address has created 2 sessions') });
    expect(third.headers.get('retry-after')).toBe('5');
    // Joining a session that exists creates none: only the registration counts.
    expect((await s.register('a', '2')).status).toBe(200);
    const fourth = await s.register('a', '3');
    expect(fourth.status).toBe(429);
    expect(fourth.body.error).toBe('too_many_peers');
    expect(fourth.body.message).toContain('3 registrations alive');
    // Registering an id it holds again (a takeover of its own) counts once.
    expect((await s.register('a', '2', { at: 2 })).status).toBe(200);

    // Leaving gives a registration back.
    expect((await s.leave('a', '2')).status).toBe(200);
    expect((await s.register('a', '3')).status).toBe(200);
    expect((await s.register('a', '4')).status).toBe(429);

    // Timing out gives back the registration, and the session it created once it is empty.
    await s.advance(10_001);
    expect((await s.register('c', '1')).status).toBe(200);
    expect((await s.register('d', '1')).status).toBe(200);
    expect((await s.register('e', '1')).status).toBe(429);

    // Closing a session gives back the session and its registrations.
    const token = (await s.register('c', '2')).body.token as string;
    expect((await s.register('c', '3')).status).toBe(429);
    expect((await s.close('c', { at: 1, headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await s.register('e', '1')).status).toBe(200);
    expect((await s.register('e', '2')).status).toBe(200);
    expect((await s.register('e', '3')).status).toBe(429);
  });

  test('a takeover moves the registration to the address that made it', async () => {
    // Two client addresses, through a trusted proxy's X-Forwarded-For.
    const s = await backend.start({ maxPeersPerIp: 1, registerRatePerMin: 0, trustProxy: 1 });
    const register = (peer: string, ip: string, at: number) => s.register('s', peer, { headers: from(ip), at });
    expect((await register('shared', '10.0.0.1', 0)).status).toBe(200);
    expect((await register('other', '10.0.0.1', 1)).status).toBe(429);
    expect((await register('shared', '10.0.0.2', 2)).status).toBe(200);
    // 10.0.0.1 holds nothing now; 10.0.0.2 holds its one.
    expect((await register('other', '10.0.0.1', 0)).status).toBe(200);
    expect((await register('third', '10.0.0.2', 1)).status).toBe(429);
  });
});
