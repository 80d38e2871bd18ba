// The relay engine as the app holds it: loaded with the first relay session, with the calls made meanwhile
// replayed in their order; a server stopped meanwhile, or an engine that cannot load, relays nothing.
import { describe, expect, test } from 'bun:test';
import { defaultConfig } from '../../src/config';
import type { RelayEngine } from '../../src/relay/engine';
import { LazyRelay } from '../../src/relay/lazy';
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
    stats() {
      return { sessions: 1, viewers: 0, packetsIn: 0, keyframeRequests: 0, packetsOut: 0, retransmitted: 0, dropped: 0 };
    }
  }
  return { RelayEngine: Recording as unknown as typeof RelayEngine };
}

function lazy(load: () => Promise<{ RelayEngine: typeof RelayEngine }>, failures: unknown[] = []) {
  return new LazyRelay(defaultConfig(), { clock: new ManualClock(), log: () => {}, outbox: () => true, failed: (e) => failures.push(e), load });
}

describe('LazyRelay', () => {
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
    expect(calls).toEqual(['constructed', 'joined r/cam publisher', 'joined r/v1 viewer', 'receive r/v1 answer', 'left r/v1']);
    relay.closed('r');
    expect(calls.at(-1)).toBe('closed r');
    expect(relay.stats().sessions).toBe(1);
  });

  test('what a peer sends switchboard is checked at once, before the engine is there', () => {
    const relay = lazy(() => new Promise(() => {}));
    relay.joined('r', 'cam', 'publisher');
    expect(() => relay.receive('r', 'cam', 'offer', {})).toThrow('switchboard takes answer, ice-candidate and ice-restart messages');
    expect(() => relay.receive('r', 'cam', 'answer', {})).toThrow('payload.sdp');
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
