import { describe, expect, test } from 'bun:test';
import type { EventSink } from '../../src/delivery/delivery';
import { Mailbox } from '../../src/delivery/mailbox';
import { type DeliveryObserver, noObserver } from '../../src/delivery/observer';
import { SignalError } from '../../src/errors';
import { type EventBounds, fromPeer, SERVER_NOTICE } from '../../src/delivery/rules';

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

/** A sink that records what it is given, with room for `room` events until `drain()`. */
class RecordingSink implements EventSink {
  written: { id: number; json: string }[] = [];
  begun: number[] = [];
  closed = false;
  aborted: string | undefined;
  private closeListener: (() => void) | undefined;
  private drainListener: (() => void) | undefined;
  constructor(public room = Infinity) {}
  get isOpen() {
    return !this.closed;
  }
  begin(cursor: number) {
    this.begun.push(cursor);
  }
  write(id: number, json: string) {
    if (this.closed || this.room <= 0) return false;
    this.room--;
    this.written.push({ id, json });
    return true;
  }
  drain(room = Infinity) {
    this.room = room;
    this.drainListener?.();
  }
  close() {
    if (this.closed) return;
    this.closed = true;
    this.closeListener?.();
  }
  abort(reason: string) {
    this.aborted = reason;
    this.close();
  }
  onClose(fn: () => void) {
    this.closeListener = fn;
  }
  onDrain(fn: () => void) {
    this.drainListener = fn;
  }
  get ids() {
    return this.written.map((w) => w.id);
  }
}

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
    expect(sink.written).toEqual([{ id: 1, json: '"a"' }, { id: 2, json: '"b"' }]);
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
