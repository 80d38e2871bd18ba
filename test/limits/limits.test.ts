// The token buckets and the client address on their own; the limits at the routes run on both stores in
// test/contract/limits.test.ts.
import { describe, expect, test } from 'bun:test';
import { addressKey, clientAddress } from '../../src/limits/client-ip';
import { TokenBuckets } from '../../src/limits/token-buckets';
import { ManualClock } from '../helpers';

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
