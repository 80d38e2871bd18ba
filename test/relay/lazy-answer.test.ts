// A peer that brings its own offer (WHIP, WHEP) while the relay engine is still loading: its calls wait
// for the engine in their order, and an engine that cannot load refuses the offer instead of hanging.
import { describe, expect, test } from 'bun:test';
import { defaultConfig } from '../../src/config';
import { SignalError } from '../../src/errors';
import type { RelayEngine } from '../../src/relay/engine';
import { LazyRelay } from '../../src/relay/lazy';
import { ManualClock } from '../helpers';

function lazy(load: () => Promise<{ RelayEngine: typeof RelayEngine }>) {
  return new LazyRelay(defaultConfig(), { clock: new ManualClock(), log: () => {}, outbox: () => true, failed: () => {}, load });
}

describe('LazyRelay with offers of the peers', () => {
  test('expectOffer, joined and answer reach the engine in their order; the answer comes back', async () => {
    const calls: string[] = [];
    class Recording {
      /** What the engine prepares once it is loaded (the DTLS certificate). */
      async warm() {}
      expectOffer(s: string, p: string) {
        calls.push(`expect ${s}/${p}`);
      }
      joined(s: string, p: string) {
        calls.push(`joined ${s}/${p}`);
      }
      async answer(s: string, p: string, role: string, sdp: string) {
        calls.push(`answer ${s}/${p} ${role}`);
        return `answer to ${sdp}`;
      }
    }
    const relay = lazy(async () => ({ RelayEngine: Recording as unknown as typeof RelayEngine }));
    relay.expectOffer('r', 'cam');
    relay.joined('r', 'cam', 'publisher');
    const answer = relay.answer('r', 'cam', 'publisher', 'v=0 offer');
    expect(relay.loaded).toBe(false);
    expect(await answer).toBe('answer to v=0 offer');
    expect(calls).toEqual(['expect r/cam', 'joined r/cam', 'answer r/cam publisher']);
  });

  test('an engine that cannot load: the offer is refused with a 400, and so is the next one', async () => {
    const relay = lazy(async () => {
      throw new Error('no werift');
    });
    await expect(relay.answer('r', 'cam', 'publisher', 'v=0')).rejects.toBeInstanceOf(SignalError);
    const second = await relay.answer('r', 'cam', 'publisher', 'v=0').catch((e: unknown) => e);
    expect(second).toBeInstanceOf(SignalError);
    expect((second as SignalError).status).toBe(400);
  });
});
