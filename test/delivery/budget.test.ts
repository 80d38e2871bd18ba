import { describe, expect, test } from 'bun:test';
import { ManualClock, post, serversPerTest } from '../helpers';
import { scrape } from '../metrics/scrape';
import { openEvents } from '../sse-client';

const BUDGET = 1_048_576;
const PEER_BUDGET = 131_072;
/** Everything else out of the way: the byte budgets are what is tested. */
const config = { maxEventBytes: BUDGET, maxPeerEventBytes: PEER_BUDGET, maxQueue: 256, registerRatePerMin: 0, messageRatePerS: 0, peerMessageRatePerS: 0 };

describe('byte budgets, on a real listener', () => {
  const { listen, streams } = serversPerTest();

  test('one address with many peers and large messages cannot make the server hold more than MAX_EVENT_BYTES', async () => {
    const { url } = listen(config);
    const payload = 'x'.repeat(60_000);
    // 40 peers that never read, in 4 sessions, and a sender in each.
    for (let s = 0; s < 4; s++) {
      expect((await post(`${url}/register/s${s}/sender`)).status).toBe(200);
      for (let p = 0; p < 10; p++) expect((await post(`${url}/register/s${s}/p${p}`)).status).toBe(200);
    }
    const answers: Record<number, number> = {};
    const refusals = new Set<string>();
    for (let round = 0; round < 3; round++) {
      for (let s = 0; s < 4; s++) {
        for (let p = 0; p < 10; p++) {
          const res = await post(`${url}/message/s${s}/sender`, { type: 'blob', target: `p${p}`, payload });
          answers[res.status] = (answers[res.status] ?? 0) + 1;
          if (res.status === 429) refusals.add(res.body.error);
        }
      }
      expect((await scrape(url)).value('switchboard_event_bytes')).toBeLessThanOrEqual(BUDGET);
    }
    // 120 × 60 kB asked for, about 7 MB: what fits in 1 MiB was queued, the rest refused as queue_full.
    expect(answers[202]).toBeGreaterThanOrEqual(16);
    expect(answers[429]).toBeGreaterThan(80);
    expect([...refusals]).toEqual(['queue_full']);
    const held = (await scrape(url)).value('switchboard_event_bytes');
    expect(held).toBeGreaterThan(BUDGET - 2 * 61_000);
    expect(held).toBeLessThanOrEqual(BUDGET);
  });

  test('a peer holds at most MAX_PEER_EVENT_BYTES; once it reads, it can be sent to again', async () => {
    const { url } = listen(config);
    await post(`${url}/register/s/sender`);
    await post(`${url}/register/s/target`);
    const payload = 'y'.repeat(60_000);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await post(`${url}/message/s/sender`, { type: 'blob', target: 'target', payload })).status);
    expect(statuses).toEqual([202, 202, 429, 429]);
    const refused = await post(`${url}/message/s/sender`, { type: 'blob', target: 'target', payload });
    expect(refused.body.message).toContain('bytes of undelivered events');
    // Reading frees the room: the written events stay for resume only while there is room for them.
    const stream = await openEvents(`${url}/events/s/target`);
    streams.push(stream);
    await stream.next((e) => e.json.type === 'blob');
    await stream.next((e) => e.json.type === 'blob');
    expect((await post(`${url}/message/s/sender`, { type: 'blob', target: 'target', payload })).status).toBe(200);
    expect((await scrape(url)).value('switchboard_event_bytes')).toBeLessThanOrEqual(PEER_BUDGET + 1024);
  });
});

describe('sessions and registrations per address, on a real listener', () => {
  const { listen } = serversPerTest();

  test('past MAX_SESSIONS_PER_IP and MAX_PEERS_PER_IP, POST /register answers 429; leaving, timing out, takeover and close give room back', async () => {
    const clock = new ManualClock();
    const { url } = listen({ maxSessionsPerIp: 2, maxPeersPerIp: 3, registerRatePerMin: 0, peerTimeoutMs: 10_000 }, { clock });
    expect((await post(`${url}/register/a/1`)).status).toBe(200);
    expect((await post(`${url}/register/b/1`)).status).toBe(200);
    const third = await post(`${url}/register/c/1`);
    expect(third.status).toBe(429);
    expect(third.body).toEqual({ error: 'too_many_sessions', message: expect.stringContaining('this address has created 2 sessions') });
    expect(third.headers.get('retry-after')).toBe('5');
    // Joining a session that exists creates none: only the registration counts.
    expect((await post(`${url}/register/a/2`)).status).toBe(200);
    const fourth = await post(`${url}/register/a/3`);
    expect(fourth.status).toBe(429);
    expect(fourth.body.error).toBe('too_many_peers');
    expect(fourth.body.message).toContain('3 registrations alive');
    // Registering an id it holds again (a takeover of its own) counts once.
    expect((await post(`${url}/register/a/2`)).status).toBe(200);

    // Leaving gives a registration back.
    const left = await fetch(`${url}/register/a/2`, { method: 'DELETE' });
    expect(left.status).toBe(200);
    expect((await post(`${url}/register/a/3`)).status).toBe(200);
    expect((await post(`${url}/register/a/4`)).status).toBe(429);

    // Timing out gives back the registration, and the session it created once it is empty.
    clock.advance(10_001);
    expect((await post(`${url}/register/c/1`)).status).toBe(200);
    expect((await post(`${url}/register/d/1`)).status).toBe(200);
    expect((await post(`${url}/register/e/1`)).status).toBe(429);

    // Closing a session gives back the session and its registrations.
    const token = (await post(`${url}/register/c/2`)).body.token as string;
    expect((await post(`${url}/register/c/3`)).status).toBe(429);
    const closed = await fetch(`${url}/session/c`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    expect(closed.status).toBe(200);
    expect((await post(`${url}/register/e/1`)).status).toBe(200);
    expect((await post(`${url}/register/e/2`)).status).toBe(200);
    expect((await post(`${url}/register/e/3`)).status).toBe(429);
  });

  test('a takeover moves the registration to the address that made it', async () => {
    // Two client addresses, through a trusted proxy's X-Forwarded-For.
    const { url } = listen({ maxPeersPerIp: 1, registerRatePerMin: 0, trustProxy: 1 });
    const from = (ip: string) => ({ 'x-forwarded-for': ip });
    const register = (path: string, ip: string) => fetch(`${url}/register/${path}`, { method: 'POST', headers: from(ip) });
    expect((await register('s/shared', '10.0.0.1')).status).toBe(200);
    expect((await register('s/other', '10.0.0.1')).status).toBe(429);
    expect((await register('s/shared', '10.0.0.2')).status).toBe(200);
    // 10.0.0.1 holds nothing now; 10.0.0.2 holds its one.
    expect((await register('s/other', '10.0.0.1')).status).toBe(200);
    expect((await register('s/third', '10.0.0.2')).status).toBe(429);
  });
});
