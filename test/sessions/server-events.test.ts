import { describe, expect, test } from 'bun:test';
import { defaultConfig } from '../../src/config';
import { eventJson } from '../../src/delivery/delivery';
import { LocalDelivery } from '../../src/delivery/local';
import { eventBounds } from '../../src/delivery/rules';
import { LocalSignalling } from '../../src/sessions/local-signalling';
import { SessionStore } from '../../src/sessions/store';
import { RecordingSink } from '../fixtures/recording-sink';
import { ManualClock } from '../helpers';

/** A one-process signalling core as the app builds it, with MAX_QUEUE=8. */
function core(overrides: Parameters<typeof defaultConfig>[0] = {}) {
  const config = defaultConfig({ maxQueue: 8, ...overrides });
  const delivery = new LocalDelivery(eventBounds(config), undefined);
  const signalling = new LocalSignalling(config, { store: new SessionStore(), delivery, clock: new ManualClock() });
  return { signalling, delivery };
}

const parsed = (sink: RecordingSink) => sink.written.map((w) => JSON.parse(eventJson(w.members)) as { type: string; payload?: unknown; senderId: string });

describe('server events count against the bounds', () => {
  test('30 restarts of the server peer leave a handful of held events, and the reader gets the newest offer', () => {
    const { signalling } = core();
    signalling.register('s', 'viewer');
    // What the relay sends on each ice-restart: a new offer, then its candidates.
    for (let n = 1; n <= 30; n++) {
      expect(signalling.fromServer('s', 'viewer', 'offer', { type: 'offer', sdp: `v=0 restart ${n}` })).toBe(true);
      for (let c = 0; c < 2; c++) signalling.fromServer('s', 'viewer', 'ice-candidate', { candidate: `candidate:${n}-${c}` });
    }
    const sink = new RecordingSink();
    signalling.connect('s', 'viewer', sink);
    expect(sink.written.length).toBeLessThanOrEqual(3);
    const events = parsed(sink);
    expect(events[0]).toEqual({ type: 'offer', payload: { type: 'offer', sdp: 'v=0 restart 30' }, senderId: 'switchboard' });
    expect(events.slice(1).map((e) => e.type)).toEqual(['ice-candidate', 'ice-candidate']);
  });

  test('a client message still fits after many restarts: superseded events take no room', () => {
    const { signalling } = core();
    signalling.register('s', 'viewer');
    signalling.register('s', 'other');
    for (let n = 1; n <= 30; n++) signalling.fromServer('s', 'viewer', 'offer', { sdp: `${n}` });
    expect(signalling.send('s', 'other', { type: 'chat', target: 'viewer' })).toBe('queued');
  });

  test('peers that come and go leave one notice each in a peer that is not reading', () => {
    const { signalling } = core();
    signalling.register('s', 'idle');
    for (let i = 0; i < 30; i++) {
      signalling.register('s', 'flapper');
      signalling.leave('s', 'flapper');
    }
    signalling.register('s', 'flapper');
    const sink = new RecordingSink();
    signalling.connect('s', 'idle', sink);
    expect(parsed(sink).map((e) => `${e.type}:${e.senderId}`)).toEqual(['new-peer:flapper']);
  });

  test('past the process budget, kept events of other peers give way, then senders get queue_full; the gauge stays under it', () => {
    const { signalling, delivery } = core({ maxQueue: 256, maxPeerEventBytes: 131_072, maxEventBytes: 300_000 });
    const payload = 'x'.repeat(60_000);
    signalling.register('s', 'sender');
    // A reader whose written events are kept for resume.
    signalling.register('s', 'reader');
    const reader = new RecordingSink();
    signalling.connect('s', 'reader', reader);
    for (let i = 0; i < 2; i++) expect(signalling.send('s', 'sender', { type: 'big', target: 'reader', payload })).toBe('sent');
    const kept = delivery.eventBytes;
    expect(kept).toBeGreaterThan(120_000);
    // Targets that do not read: their held events fill the budget, squeezing out what the reader kept.
    let refused = 0;
    for (let p = 0; p < 6; p++) {
      signalling.register('s', `sink${p}`);
      for (let i = 0; i < 3; i++) {
        try {
          signalling.send('s', 'sender', { type: 'big', target: `sink${p}`, payload });
        } catch (e) {
          expect((e as { code: string }).code).toBe('queue_full');
          refused++;
        }
        expect(delivery.eventBytes).toBeLessThanOrEqual(300_000 + 1024);
      }
    }
    expect(refused).toBeGreaterThan(0);
    // The reader's kept events went first: its resume window shrank, honestly.
    expect(() => signalling.connect('s', 'reader', new RecordingSink(), 0)).toThrow('no longer kept');
  });
});
