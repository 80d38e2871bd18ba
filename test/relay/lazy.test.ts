// The relay engine as the app holds it: loaded with the first relay session, with the calls made meanwhile
// replayed in their order; a server stopped meanwhile, or an engine that cannot load, relays nothing.
import { describe, expect, test } from 'bun:test';
import { defaultConfig } from '../../src/config';
import type { RelayEngine } from '../../src/relay/engine';
import { LazyRelay } from '../../src/relay/lazy';
import { MAX_REMOTE_CANDIDATES } from '../../src/relay/messages';
import { ManualClock } from '../helpers';

/** An engine that writes down what it is told. */
function recordingEngine(calls: string[]) {
  class Recording {
    constructor() {
      calls.push('constructed');
    }
    joined(s: string, p: string, role: string) {
      calls.push(`joined ${s}/${p} ${role}`);
    }
    reachable(s: string, p: string) {
      calls.push(`reachable ${s}/${p}`);
    }
    left(s: string, p: string) {
      calls.push(`left ${s}/${p}`);
    }
    message(s: string, p: string, message: { type: string }) {
      calls.push(`receive ${s}/${p} ${message.type}`);
    }
    closed(s: string) {
      calls.push(`closed ${s}`);
    }
    shutdown() {
      calls.push('shutdown');
    }
    async warm() {
      calls.push('warm');
    }
    stats() {
      return {
        sessions: 1,
        viewers: 0,
        connections: 0,
        packetsIn: 0,
        keyframeRequests: 0,
        packetsOut: 0,
        retransmitted: 0,
        dropped: 0,
        keyframeCacheBytes: 0,
        keyframeCacheReplays: 0,
        keyframeCacheEvictions: 0,
      };
    }
  }
  return { RelayEngine: Recording as unknown as typeof RelayEngine };
}

function lazy(load: () => Promise<{ RelayEngine: typeof RelayEngine }>, failures: unknown[] = []) {
  return new LazyRelay(defaultConfig(), { clock: new ManualClock(), log: () => {}, outbox: () => true, failed: (e) => failures.push(e), load });
}

describe('LazyRelay', () => {
  test('prewarm loads the engine and what its first connection needs, once; the sessions after it find it there', async () => {
    const calls: string[] = [];
    let loads = 0;
    const relay = lazy(async () => {
      loads++;
      return recordingEngine(calls);
    });
    await relay.prewarm();
    expect(relay.loaded).toBe(true);
    relay.joined('r', 'cam', 'publisher');
    await relay.prewarm();
    expect(loads).toBe(1);
    expect(calls).toEqual(['constructed', 'warm', 'joined r/cam publisher']);
  });

  test('nothing loads until a relay session starts; what comes meanwhile reaches the engine in its order', async () => {
    const calls: string[] = [];
    let loads = 0;
    const relay = lazy(async () => {
      loads++;
      return recordingEngine(calls);
    });
    relay.left('r', 'x');
    relay.closed('r');
    expect(loads).toBe(0);
    expect(relay.stats().sessions).toBe(0);
    relay.joined('r', 'cam', 'publisher');
    relay.joined('r', 'v1', 'viewer');
    relay.receive('r', 'v1', 'answer', { sdp: 'v=0' });
    relay.left('r', 'v1');
    expect(relay.loaded).toBe(false);
    await relay.ready;
    expect(loads).toBe(1);
    // The engine first makes what its first connection needs (the DTLS certificate).
    expect(calls).toEqual(['constructed', 'warm', 'joined r/cam publisher', 'joined r/v1 viewer', 'receive r/v1 answer', 'left r/v1']);
    relay.closed('r');
    expect(calls.at(-1)).toBe('closed r');
    expect(relay.stats().sessions).toBe(1);
  });

  test('what a peer sends switchboard is checked at once, before the engine is there', () => {
    const relay = lazy(() => new Promise(() => {}));
    relay.joined('r', 'cam', 'publisher');
    expect(() => relay.receive('r', 'cam', 'pranswer', {})).toThrow('switchboard takes offer, answer, ice-candidate and ice-restart messages');
    expect(() => relay.receive('r', 'cam', 'answer', {})).toThrow('payload.sdp');
    expect(() => relay.receive('r', 'cam', 'offer', { sdp: 'v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n' })).toThrow('a=ice-ufrag');
  });

  test(`while the engine loads, a peer's candidates wait up to ${MAX_REMOTE_CANDIDATES}; the next is refused at once`, async () => {
    const calls: string[] = [];
    let loaded: (engine: { RelayEngine: typeof RelayEngine }) => void = () => {};
    const relay = lazy(() => new Promise((resolve) => (loaded = resolve)));
    relay.joined('r', 'cam', 'publisher');
    relay.reachable('r', 'cam');
    const candidate = { candidate: 'candidate:1 1 udp 2122260223 192.0.2.9 50000 typ host' };
    for (let i = 0; i < MAX_REMOTE_CANDIDATES; i++) relay.receive('r', 'cam', 'ice-candidate', candidate);
    expect(() => relay.receive('r', 'cam', 'ice-candidate', candidate)).toThrow(expect.objectContaining({ code: 'too_many_candidates', status: 429 }));
    // Another peer has its own count; the end of candidates is none.
    relay.receive('r', 'v1', 'ice-candidate', candidate);
    relay.receive('r', 'cam', 'ice-candidate', null);
    loaded(recordingEngine(calls));
    await relay.ready;
    expect(calls.slice(0, 4)).toEqual(['constructed', 'warm', 'joined r/cam publisher', 'reachable r/cam']);
    expect(calls.filter((c) => c === 'receive r/cam ice-candidate')).toHaveLength(MAX_REMOTE_CANDIDATES + 1);
  });

  test('a server stopped while the engine loads never starts it', async () => {
    const calls: string[] = [];
    const relay = lazy(async () => recordingEngine(calls));
    relay.joined('r', 'cam', 'publisher');
    relay.shutdown();
    await relay.ready;
    relay.joined('r', 'v1', 'viewer');
    expect(calls).toEqual([]);
    expect(relay.loaded).toBe(false);
  });

  test('an engine that cannot load is reported once, and later calls do nothing', async () => {
    const failures: unknown[] = [];
    let loads = 0;
    const relay = lazy(async () => {
      loads++;
      throw new Error('no werift');
    }, failures);
    relay.joined('r', 'cam', 'publisher');
    await relay.ready;
    relay.joined('r', 'v1', 'viewer');
    await relay.ready;
    expect(loads).toBe(1);
    expect(failures.map(String)).toEqual(['Error: no werift']);
    expect(relay.stats().sessions).toBe(0);
  });
});
