import { refusals, type SignalError } from '../errors';
import type { Delivered, EventMembers, EventSink } from './delivery';
import { type DeliveryObserver, noObserver } from './observer';
import { type EventBounds, eventSize, FIRST_EPOCH, isServerTag, nextEpoch, queueRefusal, resumeRefusal, type Topic } from './rules';

/** What every mailbox of a process holds together, in bytes: the process budget is checked against it. */
export class EventBytes {
  /** Bytes of events not yet written to any stream. */
  held = 0;
  /** Bytes of every event kept: held, and written but kept for resume. */
  all = 0;
}

/**
 * The log of a mailbox that has had no event yet, shared by all of them: frozen, so that a write to it
 * throws. Most mailboxes of a fleet are a device's waiting for a viewer, with nothing in them; four
 * empty arrays of their own were about 250 bytes each.
 */
const NO_EVENTS = Object.freeze([]) as unknown as never[];

/**
 * One peer's event log. Events get increasing ids. Those after `cursor` are held (not yet written to
 * any stream); up to `retain` written ones are kept so that a client that lost its connection can
 * resume from its Last-Event-ID. A held server event that a newer one supersedes (see `Topic`) leaves a
 * hole: its id is skipped, never written, so that what is written keeps its order and an id never
 * names two events.
 *
 *   firstId … cursor | cursor+1 … lastId
 *   written, kept    | held
 */
export class Mailbox {
  /** The events, `undefined` where one was superseded or dropped. */
  private log: (EventMembers | undefined)[] = NO_EVENTS;
  /** Beside each entry of `log`: when a client message was accepted, until it is first written (else -1). */
  private stamps: number[] = NO_EVENTS;
  /** Beside each entry: its topic's tag, and its size in bytes. */
  private tags: string[] = NO_EVENTS;
  private sizes: number[] = NO_EVENTS;
  /** Index in `log` of the entry with id `firstId`; entries before it are dead and compacted lazily. */
  private head = 0;
  private firstId: number;
  private cursor: number;
  /** The first id of this incarnation of the peer; older ids belong to a registration that was taken over. */
  private epochStart: number;
  /** Live events after the cursor, and their bytes; the bytes of every live event. */
  private heldCount = 0;
  private heldBytes = 0;
  private bytes = 0;
  sink: EventSink | undefined;

  constructor(
    private readonly bounds: EventBounds,
    private readonly pool: EventBytes = new EventBytes(),
    private readonly observer: DeliveryObserver = noObserver,
  ) {
    this.epochStart = FIRST_EPOCH;
    this.firstId = FIRST_EPOCH;
    this.cursor = FIRST_EPOCH - 1;
  }

  private get lastId(): number {
    return this.firstId + (this.log.length - this.head) - 1;
  }

  /** Events not yet written to a stream. */
  get held(): number {
    return this.heldCount;
  }

  /** Bytes of the events kept, held and written. */
  get size(): number {
    return this.bytes;
  }

  /**
   * A new incarnation (the peer registered again): closes the stream and drops the log; its ids start
   * at `nextEpoch`.
   */
  reset(): void {
    const next = nextEpoch(this.lastId);
    this.discard();
    this.log = NO_EVENTS;
    this.stamps = NO_EVENTS;
    this.tags = NO_EVENTS;
    this.sizes = NO_EVENTS;
    this.head = 0;
    this.epochStart = next;
    this.firstId = next;
    this.cursor = next - 1;
    const sink = this.sink;
    this.sink = undefined;
    sink?.close();
  }

  /** Gives back to the process budget every byte this mailbox holds: it is being dropped. */
  discard(): void {
    this.pool.held -= this.heldBytes;
    this.pool.all -= this.bytes;
    this.heldCount = 0;
    this.heldBytes = 0;
    this.bytes = 0;
  }

  /** The id before the first event of this incarnation: a first stream opened from it misses nothing. */
  get start(): number {
    return this.epochStart - 1;
  }

  /** Why a client message of `size` bytes cannot be taken now (written events kept for resume give way), or undefined. */
  refusal(size: number): SignalError | undefined {
    const why = queueRefusal({ events: this.heldCount, bytes: this.heldBytes }, size, this.bounds);
    if (why === 'held') return refusals.queueHeld(this.heldCount);
    if (why === 'bytes') return refusals.queueBytes(this.heldBytes);
    return undefined;
  }

  /**
   * Appends an event. A client message is refused (`queue_full`) past the peer's bounds; a server event
   * never is: it supersedes the held events it makes stale instead.
   */
  append(members: EventMembers, topic: Topic, size = eventSize(members)): Delivered {
    if (!topic.fromServer) {
      const refused = this.refusal(size);
      if (refused) {
        // A stream that lets this much pile up is not being read fast enough: end it, the client resumes.
        // Ended, not dropped: what was written still reaches it, so it resumes exactly where it stopped
        // (a dropped connection can lose megabytes in flight, far more than the resume window).
        this.sink?.close();
        throw refused;
      }
    } else {
      if (topic.replaces.length > 0) this.supersede(topic);
      if (this.heldCount >= this.bounds.maxHeldAny) this.dropOldestServerEvent();
    }
    this.dropRetained(this.bytes + size - this.bounds.peerBytes);
    if (this.log === NO_EVENTS) {
      this.log = [];
      this.stamps = [];
      this.tags = [];
      this.sizes = [];
    }
    this.log.push(members);
    this.stamps.push(topic.fromServer ? -1 : this.observer.stamp());
    this.tags.push(topic.tag);
    this.sizes.push(size);
    this.heldCount++;
    this.account(size, size);
    return this.flush() ? 'sent' : 'queued';
  }

  /**
   * Drops written events kept for resume, oldest first, until `excess` bytes are freed or none is left;
   * returns the bytes freed. It only shortens the resume window: a resume from before it answers resume_gap.
   */
  dropRetained(excess: number): number {
    let freed = 0;
    while (freed < excess && this.firstId <= this.cursor) {
      const size = this.log[this.head] === undefined ? 0 : (this.sizes[this.head] as number);
      this.log[this.head] = undefined;
      this.head++;
      this.firstId++;
      freed += size;
      this.account(0, -size);
    }
    this.compact();
    return freed;
  }

  /** Attaches `sink`, first rewinding to `lastEventId` when the client says where it is. */
  attach(sink: EventSink, lastEventId: number | undefined): void {
    if (lastEventId !== undefined) {
      const refused = resumeRefusal(lastEventId, { epoch: this.epochStart, first: this.firstId, last: this.lastId });
      if (refused === 'superseded') throw refusals.superseded();
      if (refused === 'resume_gap') throw refusals.resumeGap(lastEventId);
      this.rewind(lastEventId);
    }
    const previous = this.sink;
    this.sink = sink;
    previous?.close();
    sink.onDrain(() => {
      if (this.sink === sink) this.flush();
    });
    // The position first, so that a stream lost in the middle of what follows can resume from it.
    sink.begin(this.cursor);
    this.flush();
  }

  /** Moves the cursor to `id` and counts again what is held after it. */
  private rewind(id: number): void {
    let count = 0;
    let bytes = 0;
    for (let i = this.head + id + 1 - this.firstId; i < this.log.length; i++) {
      if (this.log[i] === undefined) continue;
      count++;
      bytes += this.sizes[i] as number;
    }
    this.cursor = id;
    this.heldCount = count;
    this.account(bytes - this.heldBytes, 0);
  }

  /** Writes held events to the attached stream while it takes them; true when nothing is left held. */
  private flush(): boolean {
    const sink = this.sink;
    if (!sink) return false;
    while (this.cursor < this.lastId) {
      const id = this.cursor + 1;
      const index = this.head + id - this.firstId;
      const members = this.log[index];
      if (members !== undefined) {
        if (!sink.write(id, members)) {
          if (!sink.isOpen && this.sink === sink) this.sink = undefined;
          break;
        }
        this.heldCount--;
        this.account(-(this.sizes[index] as number), 0);
      }
      this.cursor = id;
      // Measured once, at the first write: a replay after a resume is not a new delivery.
      const stamp = this.stamps[index] as number;
      if (stamp >= 0) {
        this.stamps[index] = -1;
        this.observer.delivered(stamp);
      }
    }
    this.trim();
    return this.cursor === this.lastId;
  }

  /** Supersedes the held events that `topic` makes stale, newest first, down to its barrier. */
  private supersede(topic: Topic): void {
    for (let i = this.log.length - 1; i > this.head + this.cursor - this.firstId; i--) {
      if (this.log[i] === undefined) continue;
      const tag = this.tags[i] as string;
      if (tag === topic.barrier) return;
      if (topic.replaces.includes(tag)) this.remove(i);
    }
  }

  /**
   * The backstop behind coalescing: drops the oldest held server event. There always is one here, since
   * client messages stop at `maxHeld`, below `maxHeldAny`.
   */
  private dropOldestServerEvent(): void {
    for (let i = this.head + this.cursor + 1 - this.firstId; i < this.log.length; i++) {
      if (this.log[i] !== undefined && isServerTag(this.tags[i] as string)) return this.remove(i);
    }
  }

  /** Makes a held entry a hole: it is never written. */
  private remove(index: number): void {
    const size = this.sizes[index] as number;
    this.log[index] = undefined;
    this.stamps[index] = -1;
    this.heldCount--;
    this.account(-size, -size);
  }

  private account(held: number, all: number): void {
    this.heldBytes += held;
    this.bytes += all;
    this.pool.held += held;
    this.pool.all += all;
  }

  /** Drops written events beyond the resume window. */
  private trim(): void {
    const excess = this.cursor - this.firstId + 1 - this.bounds.retain;
    if (excess <= 0) return;
    for (let i = this.head; i < this.head + excess; i++) {
      if (this.log[i] !== undefined) this.account(0, -(this.sizes[i] as number));
      this.log[i] = undefined;
    }
    this.head += excess;
    this.firstId += excess;
    this.compact();
  }

  private compact(): void {
    if (this.head > 64 && this.head * 2 > this.log.length) {
      this.log = this.log.slice(this.head);
      this.stamps = this.stamps.slice(this.head);
      this.tags = this.tags.slice(this.head);
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
  }
}
