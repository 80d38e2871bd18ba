import { describe, expect, test } from 'bun:test';
import { eventJson, eventMembers } from '../../src/delivery/delivery';
import { EventBytes, Mailbox } from '../../src/delivery/mailbox';
import { type DeliveryObserver, noObserver } from '../../src/delivery/observer';
import { type EventBounds, fromPeer, peerNotice, SERVER_NOTICE, serverSignal } from '../../src/delivery/rules';
import { SignalError } from '../../src/errors';
import { RecordingSink } from '../fixtures/recording-sink';

/** Counts only: the byte budgets out of reach. */
const bounds = (maxHeld: number, retain: number, bytes: Partial<EventBounds> = {}): EventBounds => ({
  maxHeld,
  retain,
  maxHeldAny: 2 * maxHeld,
  peerBytes: 1 << 30,
  totalBytes: 1 << 30,
  ...bytes,
});
const CLIENT = fromPeer('a');

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    if (e instanceof SignalError) return e.code;
    throw e;
  }
  return undefined;
};

describe('Mailbox', () => {
  test('holds events until a stream attaches, then writes them in order', () => {
    const box = new Mailbox(bounds(10, 10));
    expect(box.append('"a"', CLIENT)).toBe('queued');
    expect(box.append('"b"', SERVER_NOTICE)).toBe('queued');
    const sink = new RecordingSink();
    box.attach(sink, undefined);
    expect(sink.written).toEqual([
      { id: 1, members: '"a"' },
      { id: 2, members: '"b"' },
    ]);
    expect(box.append('"c"', CLIENT)).toBe('sent');
    expect(sink.ids).toEqual([1, 2, 3]);
  });

  test('a fresh stream with nothing held is told its position', () => {
    const box = new Mailbox(bounds(10, 10));
    const sink = new RecordingSink();
    box.attach(sink, undefined);
    expect(sink.begun).toEqual([0]);
  });

  test('refuses client messages past the cap but never server events', () => {
    const box = new Mailbox(bounds(2, 10));
    box.append('1', CLIENT);
    box.append('2', CLIENT);
    expect(code(() => box.append('3', CLIENT))).toBe('queue_full');
    expect(box.append('"new-peer"', SERVER_NOTICE)).toBe('queued');
    expect(box.held).toBe(3);
  });

  test('resumes after Last-Event-ID without duplicates', () => {
    const box = new Mailbox(bounds(10, 10));
    const first = new RecordingSink();
    box.attach(first, undefined);
    for (let i = 1; i <= 5; i++) box.append(String(i), CLIENT);
    const second = new RecordingSink();
    box.attach(second, 3);
    expect(first.closed).toBe(true);
    expect(second.ids).toEqual([4, 5]);
  });

  test('a full stream leaves events held, in order, until it drains', () => {
    const box = new Mailbox(bounds(10, 10));
    const sink = new RecordingSink(2);
    box.attach(sink, undefined);
    expect(box.append('1', CLIENT)).toBe('sent');
    expect(box.append('2', CLIENT)).toBe('sent');
    expect(box.append('3', CLIENT)).toBe('queued');
    expect(box.append('4', CLIENT)).toBe('queued');
    expect(box.sink).toBe(sink);
    sink.drain();
    expect(sink.ids).toEqual([1, 2, 3, 4]);
    expect(box.append('5', CLIENT)).toBe('sent');
  });

  test('a closed stream is detached and what it missed is held for the next one', () => {
    const box = new Mailbox(bounds(10, 10));
    const sink = new RecordingSink();
    box.attach(sink, undefined);
    box.append('1', CLIENT);
    sink.close();
    expect(box.append('2', CLIENT)).toBe('queued');
    expect(box.sink).toBeUndefined();
    const next = new RecordingSink();
    box.attach(next, 1);
    expect(next.ids).toEqual([2]);
  });

  test('a stream that lets the mailbox fill up is ended after what it took, and its reader can resume', () => {
    const box = new Mailbox(bounds(3, 10));
    const sink = new RecordingSink(1);
    box.attach(sink, undefined);
    box.append('1', CLIENT);
    for (let i = 2; i <= 4; i++) expect(box.append(String(i), CLIENT)).toBe('queued');
    expect(code(() => box.append('5', CLIENT))).toBe('queue_full');
    // Ended, not dropped: what the stream took still reaches its client.
    expect(sink.closed).toBe(true);
    expect(sink.aborted).toBeUndefined();
    const next = new RecordingSink();
    box.attach(next, 0);
    expect(next.ids).toEqual([1, 2, 3, 4]);
  });

  test('keeps only the resume window of written events, and says so when asked for older ones', () => {
    const box = new Mailbox(bounds(100, 3));
    const sink = new RecordingSink();
    box.attach(sink, undefined);
    for (let i = 1; i <= 10; i++) box.append(String(i), CLIENT);
    expect(code(() => box.attach(new RecordingSink(), 5))).toBe('resume_gap');
    const resumed = new RecordingSink();
    box.attach(resumed, 7);
    expect(resumed.ids).toEqual([8, 9, 10]);
  });

  test('an id that was never sent cannot be resumed from', () => {
    const box = new Mailbox(bounds(10, 10));
    box.append('1', CLIENT);
    expect(code(() => box.attach(new RecordingSink(), 2))).toBe('resume_gap');
  });

  test('a takeover closes the stream and drops what was held; the old incarnation cannot resume', () => {
    const box = new Mailbox(bounds(10, 10));
    const old = new RecordingSink();
    box.attach(old, undefined);
    box.append('1', CLIENT);
    box.append('2', CLIENT);
    box.reset();
    expect(old.closed).toBe(true);
    box.append('"held before the new stream"', SERVER_NOTICE);
    box.reset();
    expect(code(() => box.attach(new RecordingSink(), 2))).toBe('superseded');
    const fresh = new RecordingSink();
    box.attach(fresh, undefined);
    expect(fresh.written).toEqual([]);
    box.append('"new"', CLIENT);
    const [newId] = fresh.ids;
    expect(newId).toBeGreaterThan(2);
    const again = new RecordingSink();
    box.attach(again, fresh.begun[0]);
    expect(again.ids).toEqual([newId as number]);
  });

  test('memory stays bounded over many events', () => {
    const box = new Mailbox(bounds(10, 16));
    box.attach(new RecordingSink(), undefined);
    for (let i = 0; i < 100_000; i++) box.append('x', CLIENT);
    expect((box as unknown as { log: string[] }).log.length).toBeLessThan(200);
  });

  test('tells its observer how long each client message took to be written, once, time held included', () => {
    let now = 100;
    const delivered: number[] = [];
    const observer: DeliveryObserver = { ...noObserver, stamp: () => now, delivered: (stamp) => delivered.push(now - stamp) };
    const box = new Mailbox(bounds(10, 10), undefined, observer);
    box.append('"held"', CLIENT);
    box.append('"new-peer"', SERVER_NOTICE);
    now = 350;
    const sink = new RecordingSink();
    box.attach(sink, undefined);
    box.append('"direct"', CLIENT);
    expect(delivered).toEqual([250, 0]);
    // A resume writes them again; that is not a new delivery.
    const again = new RecordingSink();
    box.attach(again, 0);
    expect(again.ids).toEqual([1, 2, 3]);
    expect(delivered).toEqual([250, 0]);
  });

  test('keeps its stamps beside its log when it compacts', () => {
    let now = 0;
    const delivered: number[] = [];
    const box = new Mailbox(bounds(100, 16), undefined, { ...noObserver, stamp: () => now, delivered: (stamp) => delivered.push(now - stamp) });
    const sink = new RecordingSink(0);
    box.attach(sink, undefined);
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 10; i++) box.append('x', CLIENT);
      now += 5;
      sink.drain();
      sink.room = 0;
    }
    expect(delivered).toEqual(Array(200).fill(5));
  });
});

describe('Mailbox: server events supersede what they make stale', () => {
  const offer = (n: number) => eventMembers(JSON.stringify({ type: 'offer', payload: { n }, senderId: 'switchboard' }));
  const candidate = (n: number) => eventMembers(JSON.stringify({ type: 'ice-candidate', payload: { n }, senderId: 'switchboard' }));
  const notice = (type: string, peer: string) => eventMembers(JSON.stringify({ type, senderId: peer }));
  const types = (sink: RecordingSink) => sink.written.map((w) => JSON.parse(eventJson(w.members)) as { type: string; payload?: { n: number }; senderId: string });

  test('a newer offer from switchboard replaces an undelivered older one and its candidates; what is written keeps its order', () => {
    const box = new Mailbox(bounds(8, 8));
    box.append(eventMembers(JSON.stringify({ type: 'hello', senderId: 'a' })), CLIENT);
    for (let n = 1; n <= 30; n++) {
      box.append(offer(n), serverSignal('offer'));
      for (let c = 0; c < 3; c++) box.append(candidate(n), serverSignal('ice-candidate'));
    }
    expect(box.held).toBe(5);
    const sink = new RecordingSink();
    box.attach(sink, undefined);
    expect(types(sink).map((e) => `${e.type}${e.payload?.n ?? ''}`)).toEqual(['hello', 'offer30', 'ice-candidate30', 'ice-candidate30', 'ice-candidate30']);
    // Ids increase; the superseded ones are skipped, never written.
    expect(sink.ids[0]).toBe(1);
    expect(sink.ids.slice(1)).toEqual([118, 119, 120, 121]);
  });

  test('an offer already written is not superseded; candidates of it still held are', () => {
    const box = new Mailbox(bounds(8, 8));
    const sink = new RecordingSink(1);
    box.attach(sink, undefined);
    box.append(offer(1), serverSignal('offer'));
    box.append(candidate(1), serverSignal('ice-candidate'));
    box.append(offer(2), serverSignal('offer'));
    sink.drain();
    expect(types(sink).map((e) => `${e.type}${e.payload?.n}`)).toEqual(['offer1', 'offer2']);
    expect(sink.ids).toEqual([1, 3]);
  });

  test('new-peer and peer-left about one peer collapse to the latest, but never across a message from that peer', () => {
    const box = new Mailbox(bounds(8, 8));
    for (let i = 0; i < 20; i++) {
      box.append(notice('new-peer', 'b'), peerNotice('b'));
      box.append(notice('peer-left', 'b'), peerNotice('b'));
    }
    box.append(notice('new-peer', 'c'), peerNotice('c'));
    box.append(notice('new-peer', 'b'), peerNotice('b'));
    expect(box.held).toBe(2);
    // b's message pins the new-peer before it: nobody reads a peer's message before hearing of the peer.
    box.append(eventMembers(JSON.stringify({ type: 'offer', senderId: 'b' })), fromPeer('b'));
    box.append(notice('peer-left', 'b'), peerNotice('b'));
    const sink = new RecordingSink();
    box.attach(sink, undefined);
    expect(types(sink).map((e) => `${e.type}:${e.senderId}`)).toEqual(['new-peer:c', 'new-peer:b', 'offer:b', 'peer-left:b']);
  });

  test('a backstop keeps server events about many things bounded: the oldest held one goes', () => {
    const box = new Mailbox(bounds(4, 4));
    for (let i = 0; i < 100; i++) box.append(notice('peer-left', `p${i}`), peerNotice(`p${i}`));
    expect(box.held).toBe(8);
    const sink = new RecordingSink();
    box.attach(sink, undefined);
    expect(types(sink).map((e) => e.senderId)).toEqual(['p92', 'p93', 'p94', 'p95', 'p96', 'p97', 'p98', 'p99']);
  });

  test('a client that resumes after a superseded id gets the newer events; one that had read the old offer resumes too', () => {
    const box = new Mailbox(bounds(8, 8));
    const first = new RecordingSink();
    box.attach(first, undefined);
    box.append(offer(1), serverSignal('offer'));
    expect(first.ids).toEqual([1]);
    first.close();
    // The offer was lost in flight: the client resumes from before it, on a stream that takes nothing yet.
    const second = new RecordingSink(0);
    box.attach(second, 0);
    box.append(offer(2), serverSignal('offer'));
    second.drain();
    expect(types(second).map((e) => e.payload?.n)).toEqual([2]);
    expect(second.ids).toEqual([2]);
    // A stream that did read offer 1 (id 1) resumes after it: the newest offer, nothing missing.
    const third = new RecordingSink();
    box.attach(third, 1);
    expect(third.ids).toEqual([2]);
  });
});

describe('Mailbox: bytes', () => {
  const message = (kib: number) => JSON.stringify({ type: 'x', payload: 'a'.repeat(kib * 1024), senderId: 'a' });

  test('past its byte budget, written events kept for resume go first, then client messages are refused', () => {
    const pool = new EventBytes();
    const box = new Mailbox(bounds(100, 100, { peerBytes: 40 * 1024 }), pool);
    const sink = new RecordingSink();
    box.attach(sink, undefined);
    for (let i = 0; i < 3; i++) box.append(message(10), CLIENT);
    expect(box.size).toBeLessThanOrEqual(40 * 1024);
    // Written ones were dropped to make room: resuming from the start now answers resume_gap.
    box.append(message(10), CLIENT);
    box.append(message(10), CLIENT);
    expect(box.size).toBeLessThanOrEqual(40 * 1024);
    expect(code(() => box.attach(new RecordingSink(), 0))).toBe('resume_gap');
    // Held ones are never dropped: past the budget the sender is told.
    const reader = new RecordingSink(0);
    box.attach(reader, undefined);
    box.append(message(10), CLIENT);
    box.append(message(10), CLIENT);
    box.append(message(10), CLIENT);
    expect(code(() => box.append(message(10), CLIENT))).toBe('queue_full');
    expect(box.size).toBeLessThanOrEqual(40 * 1024);
    expect(pool.all).toBe(box.size);
    // Server events are never refused.
    expect(box.append(notice(), peerNotice('z'))).toBe('queued');
    // The refusal ended the stream that let them pile up; the next one gets all that was held.
    expect(reader.closed).toBe(true);
    const next = new RecordingSink();
    box.attach(next, undefined);
    expect(next.written).toHaveLength(4);
    box.discard();
    expect(pool).toEqual(Object.assign(new EventBytes(), { held: 0, all: 0 }));
  });

  const notice = () => JSON.stringify({ type: 'new-peer', senderId: 'z' });
});
