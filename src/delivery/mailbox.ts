import { SignalError } from '../errors';
import type { Delivered, EventSink } from './delivery';
import { type DeliveryObserver, noObserver } from './observer';

/**
 * One peer's event log. Events get consecutive ids. Those after `cursor` are held (not yet written to
 * any stream); up to `retain` written ones are kept so that a client that lost its connection can
 * resume from its Last-Event-ID.
 *
 *   firstId … cursor | cursor+1 … lastId
 *   written, kept    | held
 */
export class Mailbox {
  private log: string[] = [];
  /** Beside each entry of `log`: when a client message was accepted, until it is first written (else -1). */
  private stamps: number[] = [];
  /** Index in `log` of the entry with id `firstId`; entries before it are dead and compacted lazily. */
  private head = 0;
  private firstId: number;
  private cursor: number;
  /** The first id of this incarnation of the peer; older ids belong to a registration that was taken over. */
  private epochStart: number;
  sink: EventSink | undefined;

  constructor(
    private readonly maxHeld: number,
    private readonly retain: number,
    private readonly observer: DeliveryObserver = noObserver,
  ) {
    this.epochStart = 1;
    this.firstId = 1;
    this.cursor = 0;
  }

  private get lastId(): number {
    return this.firstId + (this.log.length - this.head) - 1;
  }

  get held(): number {
    return this.lastId - this.cursor;
  }

  /**
   * A new incarnation (the peer registered again): closes the stream and drops the log. One id is
   * skipped so that the old incarnation's Last-Event-ID can never pass for the new one's.
   */
  reset(): void {
    const next = this.lastId + 2;
    this.log = [];
    this.stamps = [];
    this.head = 0;
    this.epochStart = next;
    this.firstId = next;
    this.cursor = next - 1;
    const sink = this.sink;
    this.sink = undefined;
    sink?.close();
  }

  /** The id before the first event of this incarnation: a first stream opened from it misses nothing. */
  get start(): number {
    return this.epochStart - 1;
  }

  append(json: string, fromServer: boolean): Delivered {
    if (!fromServer && this.held >= this.maxHeld) {
      // A stream that lets this much pile up is not being read fast enough: end it, the client resumes.
      // Ended, not dropped: what was written still reaches it, so it resumes exactly where it stopped
      // (a dropped connection can lose megabytes in flight, far more than the resume window).
      this.sink?.close();
      throw new SignalError('queue_full', `the target has ${this.held} undelivered events; retry when it reads them`, 1);
    }
    this.log.push(json);
    this.stamps.push(fromServer ? -1 : this.observer.stamp());
    return this.flush() ? 'sent' : 'queued';
  }

  /** Attaches `sink`, first rewinding to `lastEventId` when the client says where it is. */
  attach(sink: EventSink, lastEventId: number | undefined): void {
    if (lastEventId !== undefined) {
      if (lastEventId < this.epochStart - 1) {
        throw new SignalError('superseded', 'this peer id registered again since that stream; register to join anew');
      }
      if (lastEventId > this.lastId || lastEventId < this.firstId - 1) {
        throw new SignalError('resume_gap', `cannot resume after event ${lastEventId}: it is no longer kept; register again`);
      }
      this.cursor = lastEventId;
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

  /** Writes held events to the attached stream while it takes them; true when nothing is left held. */
  private flush(): boolean {
    const sink = this.sink;
    if (!sink) return false;
    while (this.cursor < this.lastId) {
      const id = this.cursor + 1;
      const index = this.head + id - this.firstId;
      if (!sink.write(id, this.log[index] as string)) {
        if (!sink.isOpen && this.sink === sink) this.sink = undefined;
        break;
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

  /** Drops written events beyond the resume window. */
  private trim(): void {
    const excess = this.cursor - this.firstId + 1 - this.retain;
    if (excess <= 0) return;
    this.head += excess;
    this.firstId += excess;
    if (this.head > 64 && this.head * 2 > this.log.length) {
      this.log = this.log.slice(this.head);
      this.stamps = this.stamps.slice(this.head);
      this.head = 0;
    }
  }
}
