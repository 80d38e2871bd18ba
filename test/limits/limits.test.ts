import { describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import type { Config } from '../../src/config';
import { addressKey, clientAddress } from '../../src/limits/client-ip';
import { TokenBuckets } from '../../src/limits/token-buckets';
import { defaultConfig, ManualClock, req, serversPerTest } from '../helpers';
import { openEvents } from '../sse-client';

const from = (ip: string) => ({ 'x-forwarded-for': ip });

describe('TokenBuckets', () => {
  test('a burst, then one per 1/rate, then a wait in whole seconds', () => {
    const clock = new ManualClock();
    const buckets = new TokenBuckets(clock, 2, 3);
    expect([buckets.take('k'), buckets.take('k'), buckets.take('k')]).toEqual([0, 0, 0]);
    expect(buckets.take('k')).toBe(1);
    clock.advance(499);
    expect(buckets.take('k')).toBe(1);
    clock.advance(1);
    expect(buckets.take('k')).toBe(0);
    expect(buckets.take('other')).toBe(0);
  });

  test('a slow rate tells the real wait', () => {
    const clock = new ManualClock();
    const buckets = new TokenBuckets(clock, 1 / 60, 1);
    buckets.take('k');
    expect(buckets.take('k')).toBe(60);
    clock.advance(45_000);
    expect(buckets.take('k')).toBe(15);
  });

  test('memory stays bounded under a flood of new keys', () => {
    const clock = new ManualClock();
    const buckets = new TokenBuckets(clock, 1, 10, 5000);
    for (let i = 0; i < 50_000; i++) buckets.take(`k${i}`);
    expect(buckets.size).toBeLessThanOrEqual(5000);
    clock.advance(10_000);
    buckets.take('again');
    for (let i = 0; i < 2000; i++) buckets.take(`n${i}`);
    expect(buckets.size).toBeLessThanOrEqual(5000);
  });
});

describe('the client address', () => {
  const request = (xff?: string) => new Request('http://x/', { headers: xff === undefined ? {} : { 'x-forwarded-for': xff } });
  const socket = { requestIP: () => ({ address: '10.0.0.1' }) };

  test('X-Forwarded-For is ignored unless TRUST_PROXY says how many proxies write it', () => {
    expect(clientAddress(request('6.6.6.6'), socket, 0)).toBe('10.0.0.1');
    expect(clientAddress(request('6.6.6.6'), undefined, 0)).toBeUndefined();
  });

  test('with N trusted proxies, the N-th entry from the right: what the client wrote itself is skipped', () => {
    expect(clientAddress(request('6.6.6.6, 203.0.113.7'), socket, 1)).toBe('203.0.113.7');
    expect(clientAddress(request('6.6.6.6, 203.0.113.7, 10.1.1.1'), socket, 2)).toBe('203.0.113.7');
    expect(clientAddress(request('203.0.113.7'), socket, 2)).toBe('203.0.113.7');
    expect(clientAddress(request('2001:db8::1'), socket, 1)).toBe('2001:db8::1');
  });

  test('a missing or malformed header falls back to the socket', () => {
    expect(clientAddress(request(), socket, 1)).toBe('10.0.0.1');
    expect(clientAddress(request('not-an-ip'), socket, 1)).toBe('10.0.0.1');
    expect(clientAddress(request('1.2.3.4:80'), socket, 1)).toBe('10.0.0.1');
  });

  test('IPv6 addresses count per /64; IPv4-mapped ones as IPv4', () => {
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(addressKey('192.0.2.1')).toBe('192.0.2.1');
  });
});

function limitedApp(config: Partial<Config>, clock = new ManualClock()) {
  return createApp(defaultConfig({ trustProxy: 1, ...config }), { clock }).app;
}

describe('POST /register per client address', () => {
  test('429 rate_limited with Retry-After once the burst is spent; other addresses unaffected; refills with time', async () => {
    const clock = new ManualClock();
    const app = limitedApp({ registerRatePerMin: 6, registerBurst: 2 }, clock);
    expect((await req(app, 'POST', '/register/s/a', undefined, from('198.51.100.1'))).status).toBe(200);
    expect((await req(app, 'POST', '/register/s/b', undefined, from('198.51.100.1'))).status).toBe(200);
    const refused = await req(app, 'POST', '/register/s/c', undefined, from('198.51.100.1'));
    expect(refused.status).toBe(429);
    expect(refused.body.error).toBe('rate_limited');
    expect(refused.headers.get('retry-after')).toBe('10');
    expect((await req(app, 'POST', '/register/s/c', undefined, from('198.51.100.2'))).status).toBe(200);
    clock.advance(10_000);
    expect((await req(app, 'POST', '/register/s/c', undefined, from('198.51.100.1'))).status).toBe(200);
  });

  test('0 turns the limit off', async () => {
    const app = limitedApp({ registerRatePerMin: 0, registerBurst: 1 });
    for (let i = 0; i < 50; i++) expect((await req(app, 'POST', `/register/s${i}/a`, undefined, from('198.51.100.1'))).status).toBe(200);
  });
});

describe('POST /message', () => {
  test('per client address, before the body is read', async () => {
    const app = limitedApp({ messageRatePerS: 1, messageBurst: 2 });
    await req(app, 'POST', '/register/s/a');
    await req(app, 'POST', '/register/s/b');
    const body = { type: 'offer', target: 'b' };
    expect((await req(app, 'POST', '/message/s/a', body, from('198.51.100.1'))).status).toBe(202);
    expect((await req(app, 'POST', '/message/s/a', 'not even json', from('198.51.100.1'))).status).toBe(400);
    const refused = await req(app, 'POST', '/message/s/a', 'not even json', from('198.51.100.1'));
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('1');
  });

  test('per peer, wherever it sends from', async () => {
    const clock = new ManualClock();
    const app = limitedApp({ peerMessageRatePerS: 2, peerMessageBurst: 3 }, clock);
    await req(app, 'POST', '/register/s/a');
    await req(app, 'POST', '/register/s/b');
    const body = { type: 'x', target: 'b' };
    for (let i = 0; i < 3; i++) expect((await req(app, 'POST', '/message/s/a', body, from(`198.51.100.${i}`))).status).toBe(202);
    const refused = await req(app, 'POST', '/message/s/a', body, from('198.51.100.9'));
    expect(refused.status).toBe(429);
    expect(refused.body.message).toContain('peer a');
    // The other peer has its own budget.
    expect((await req(app, 'POST', '/message/s/b', { type: 'x', target: 'a' })).status).toBe(202);
    clock.advance(500);
    expect((await req(app, 'POST', '/message/s/a', body)).status).toBe(202);
  });
});

describe('open streams per client address, over a real listener', () => {
  const { listen, streams } = serversPerTest();

  test('the cap counts the socket address; a closed stream frees its slot', async () => {
    const running = listen({ maxStreamsPerIp: 2 });
    const { url } = running;
    for (const p of ['a', 'b', 'c']) await fetch(`${url}/register/s/${p}`, { method: 'POST' });
    streams.push(await openEvents(`${url}/events/s/a`), await openEvents(`${url}/events/s/b`));
    const third = await fetch(`${url}/events/s/c`);
    expect(third.status).toBe(429);
    expect(await third.json()).toMatchObject({ error: 'too_many_streams' });
    expect(third.headers.get('retry-after')).toBeTruthy();
    // X-Forwarded-For is not believed without TRUST_PROXY.
    expect((await fetch(`${url}/events/s/c`, { headers: from('203.0.113.9') })).status).toBe(429);
    streams.shift()?.close();
    // The server notices the disconnect on its own time: ask again until the slot is free.
    const deadline = Date.now() + 5000;
    let res = await fetch(`${url}/events/s/c`);
    while (res.status === 429 && Date.now() < deadline) {
      await Bun.sleep(5);
      res = await fetch(`${url}/events/s/c`);
    }
    expect(res.status).toBe(200);
    await res.body?.cancel();
  });

  test('a refused stream (unknown peer) takes no slot', async () => {
    const running = listen({ maxStreamsPerIp: 1 });
    const { url } = running;
    for (let i = 0; i < 5; i++) expect((await fetch(`${url}/events/s/nobody`)).status).toBe(404);
    await fetch(`${url}/register/s/a`, { method: 'POST' });
    await fetch(`${url}/register/s/b`, { method: 'POST' });
    for (let i = 0; i < 5; i++) expect((await fetch(`${url}/events/s/a`, { headers: { 'last-event-id': 'x' } })).status).toBe(400);
    const stream = await openEvents(`${url}/events/s/a`);
    streams.push(stream);
    expect(stream.status).toBe(200);
  });

  test('with TRUST_PROXY=1 the forwarded address counts, so clients behind one proxy are told apart', async () => {
    const running = listen({ maxStreamsPerIp: 1, trustProxy: 1 });
    const { url } = running;
    for (const p of ['a', 'b']) await fetch(`${url}/register/s/${p}`, { method: 'POST' });
    streams.push(await openEvents(`${url}/events/s/a`, { headers: from('203.0.113.1') }));
    const second = await openEvents(`${url}/events/s/b`, { headers: from('203.0.113.2') });
    streams.push(second);
    expect(second.status).toBe(200);
  });
});
