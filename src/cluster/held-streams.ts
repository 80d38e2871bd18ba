import type { EventMembers, EventSink, PeerAddress } from '../delivery/delivery';
import { type DeliveryObserver, noObserver } from '../delivery/observer';
import type { EventBounds } from '../delivery/rules';
import type { Logger } from '../log/logger';
import { decodeFrame, decodeLog, type LoggedEvent, type RelayFrame, redisKey } from './protocol';
import type { RedisLink } from './redis-link';
import { SCRIPTS } from './scripts';

/** A stream attached on this instance, and how far it has been written. */
interface Held {
  readonly key: string;
  readonly address: PeerAddress;
  readonly sink: EventSink;
  /** The attach's generation in Redis: a later attach or a takeover has a higher one. */
  readonly gen: number;
  /** The last event id written to the sink. */
  cursor: number;
  /** The highest id known to exist: above `cursor`, events wait in Redis for the sink to take them. */
  wanted: number;
  /** A fetch from the log is running: events that arrive meanwhile only raise `wanted`. */
  fetching: boolean;
  /** Events and their bytes written since the cursor was last stored in Redis. */
  unstored: number;
  unstoredBytes: number;
}

/** An attach waiting for its script's answer: messages for that peer arriving meanwhile wait here. */
interface Pending {
  readonly messages: string[];
  /** Attaches of that peer still waiting (two streams of one peer may attach at once). */
  waiting: number;
}

export interface HeldStreamsDeps {
  link: RedisLink;
  /** REDIS_PREFIX: the logs are also read outside the scripts (XRANGE). */
  prefix: string;
  args: () => string[];
  /** Milliseconds since the epoch, on the instances' clock, to turn a stamp into a latency. */
  now: () => number;
  observer?: DeliveryObserver;
  logger: Logger;
  /**
   * Events written to a stream that stay in its log for resume, the cluster's byte budget, and the
   * bounds on a peer's held events, which a cursor stored late overstates.
   */
  bounds: Pick<EventBounds, 'retain' | 'totalBytes' | 'maxHeld' | 'peerBytes'>;
  /** Called when a stream of this instance ended by itself (its client went away): its timeout starts. */
  detached(key: string, gen: number): void;
  /** A frame for the owner of a relay session (see `RelayFrame`), not about a stream. */
  relay(frame: RelayFrame): void;
}

/** Events fetched from a log per command. */
const FETCH_COUNT = 256;

/**
 * How long a moved cursor may wait to be stored in Redis: the cursors moved meanwhile, of every stream
 * held here, are stored in one step. Until then Redis counts the events written as held against the
 * peer's bounds, so a cursor that has fallen behind by a quarter of them is stored at once.
 */
const PROGRESS_MS = 20;

/** Streams refreshed per script call. */
const KEEPALIVE_BATCH = 128;

/**
 * The streams held by this instance, written from the messages routed to it (`handle`) and, when a
 * message was missed or a stream could not take it at once, from the peer's log in Redis. Every event
 * carries its id, so that each is written once and in order whatever the path it came by: a repeated
 * message is ignored, a gap is filled from the log.
 */
export class HeldStreams {
  private readonly held = new Map<string, Held>();
  private readonly pending = new Map<string, Pending>();
  private readonly dirty = new Set<Held>();
  private storeTimer: ReturnType<typeof setTimeout> | undefined;
  private storeSoon = false;
  private readonly observer: DeliveryObserver;

  constructor(private readonly deps: HeldStreamsDeps) {
    this.observer = deps.observer ?? noObserver;
  }

  /** The written cursor of a held stream, or undefined. */
  cursorOf(key: string): number | undefined {
    return this.held.get(key)?.cursor;
  }

  /** An attach of `key` is about to run: hold what is routed to it until it answers. */
  expect(key: string): void {
    const pending = this.pending.get(key);
    if (pending) pending.waiting++;
    else this.pending.set(key, { messages: [], waiting: 1 });
  }

  /** The attach answered or failed: the messages kept for it, once no other attach of the peer waits. */
  abandon(key: string): string[] {
    const pending = this.pending.get(key);
    if (!pending) return [];
    if (--pending.waiting === 0) this.pending.delete(key);
    return [...pending.messages];
  }

  /**
   * The attach answered: the sink takes over from `cursor` (the events after it in `events`), then
   * whatever was routed to it meanwhile.
   */
  install(address: PeerAddress, key: string, sink: EventSink, gen: number, cursor: number, events: readonly LoggedEvent[]): void {
    const waiting = this.abandon(key);
    const previous = this.held.get(key);
    const entry: Held = { key, address, sink, gen, cursor, wanted: cursor, fetching: false, unstored: 0, unstoredBytes: 0 };
    this.held.set(key, entry);
    // A stream of the same peer on this instance is replaced, as in one process.
    if (previous && previous.sink !== sink) previous.sink.close();
    sink.onClose(() => {
      if (this.held.get(key) !== entry) return;
      // Its cursor first: a stream opened later without Last-Event-ID starts after what this one wrote.
      if (this.dirty.delete(entry)) void this.store([entry], 0);
      this.held.delete(key);
      this.deps.detached(key, gen);
    });
    sink.onDrain(() => {
      if (this.held.get(key) === entry) this.catchUp(entry);
    });
    sink.begin(cursor);
    for (const { id, members } of events) {
      if (!this.offer(entry, id, members, -1)) break;
    }
    for (const message of waiting) this.handle(message);
  }

  /** A frame routed to this instance (see protocol.ts). */
  handle(message: string): void {
    const frame = decodeFrame(message);
    if (!frame) {
      this.deps.logger.debug('ignored a frame this version does not know', { frame: message.slice(0, 40) });
      return;
    }
    if (frame.kind === 'relay') {
      this.deps.relay(frame);
      return;
    }
    this.pending.get(frame.address)?.messages.push(message);
    const entry = this.held.get(frame.address);
    if (!entry) return;
    if (frame.kind === 'event') {
      this.offer(entry, frame.id, frame.members, frame.stamp);
    } else if (frame.kind === 'close') {
      if (frame.gen !== 0 && entry.gen >= frame.gen) return;
      this.held.delete(frame.address);
      this.dirty.delete(entry);
      if (frame.finalId !== undefined) entry.sink.write(frame.finalId, frame.members);
      entry.sink.close();
    } else {
      // Its held events reached the cap: a stream that lets this much pile up is not read fast enough.
      // Ended, not dropped, as in one process (Mailbox.append): what was written still reaches it.
      entry.sink.close();
    }
  }

  /**
   * Refreshes every held stream in Redis (its holder key, its deadline, its cursor) and fetches what a
   * stream missed. `deadline` is when each peer times out if this instance stops refreshing it.
   */
  async refresh(deadline: number): Promise<void> {
    const entries = [...this.held.values()];
    for (const entry of entries) this.dirty.delete(entry);
    const calls: Promise<void>[] = [];
    for (let i = 0; i < entries.length; i += KEEPALIVE_BATCH) calls.push(this.store(entries.slice(i, i + KEEPALIVE_BATCH), deadline));
    await Promise.all(calls);
  }

  /** Ends every held stream (shutdown); each one's timeout starts. */
  closeAll(): void {
    for (const entry of [...this.held.values()]) entry.sink.close();
    this.pending.clear();
    clearTimeout(this.storeTimer);
  }

  /** Writes event `id` if it is the next one; a later one is fetched from the log with what precedes it. */
  private offer(entry: Held, id: number, members: EventMembers, stamp: number): boolean {
    if (id <= entry.cursor) return true;
    if (id === entry.cursor + 1 && !entry.fetching && entry.sink.write(id, members)) {
      entry.cursor = id;
      if (id > entry.wanted) entry.wanted = id;
      if (stamp >= 0) this.observer.delivered(this.observer.stamp() - Math.max(0, this.deps.now() - stamp));
      this.moved(entry, members.length);
      return true;
    }
    if (id > entry.wanted) entry.wanted = id;
    // Not written now: either a gap (fetch it) or a full sink (its drain fetches).
    if (entry.sink.isOpen && id !== entry.cursor + 1) this.catchUp(entry);
    return false;
  }

  /** Writes from the log what the sink has not had, while it takes it. */
  private catchUp(entry: Held): void {
    if (entry.fetching || !entry.sink.isOpen) return;
    entry.fetching = true;
    void this.fetchLoop(entry).finally(() => {
      entry.fetching = false;
    });
  }

  private async fetchLoop(entry: Held): Promise<void> {
    const log = redisKey.log(this.deps.prefix, entry.key);
    for (;;) {
      let rows: LoggedEvent[];
      try {
        rows = decodeLog(await this.deps.link.command('XRANGE', [log, `(0-${entry.cursor}`, '+', 'COUNT', String(FETCH_COUNT)]));
      } catch {
        return; // Redis is away: the reconnection reconciles.
      }
      if (this.held.get(entry.key) !== entry) return;
      for (const { id, members } of rows) {
        if (id <= entry.cursor) continue;
        if (!entry.sink.write(id, members)) return; // full: its drain fetches again
        entry.cursor = id;
        this.moved(entry, members.length);
      }
      if (entry.cursor > entry.wanted) entry.wanted = entry.cursor;
      if (rows.length < FETCH_COUNT && entry.cursor >= entry.wanted) return;
      if (rows.length === 0) return;
    }
  }

  /**
   * Stores the cursors of `entries` in Redis in one step and, with a deadline, refreshes their attaches
   * (see KEEPALIVE). A refresh then acts on the answer: a stream whose attach is over ends, one that
   * missed events fetches them.
   */
  private async store(entries: readonly Held[], deadline: number): Promise<void> {
    const { retain, totalBytes } = this.deps.bounds;
    const args = [...this.deps.args(), String(deadline), String(retain), String(totalBytes)];
    for (const entry of entries) {
      args.push(entry.key, String(entry.gen), String(entry.cursor));
      entry.unstored = 0;
      entry.unstoredBytes = 0;
    }
    let lasts: (number | undefined)[];
    try {
      lasts = SCRIPTS.keepalive.decode(await this.deps.link.eval(SCRIPTS.keepalive, args));
    } catch (e) {
      // Stored again by the next refresh.
      this.deps.logger.debug('could not refresh streams in Redis', { streams: entries.length, error: (e as Error).message });
      return;
    }
    // Only a refresh acts on the answer. After a store of cursors alone, a stream whose attach is over
    // has its last frame (a takeover's, session-closed) still on its way on the channel, and the events
    // after the cursors are mostly on their way there too.
    if (deadline === 0) return;
    entries.forEach((entry, i) => {
      if (this.held.get(entry.key) !== entry) return;
      const last = lasts[i];
      if (last === undefined) {
        // The peer left, was taken over or attached elsewhere while this instance could not hear of it.
        this.held.delete(entry.key);
        this.dirty.delete(entry);
        entry.sink.close();
        return;
      }
      if (last > entry.wanted) entry.wanted = last;
      if (entry.wanted > entry.cursor) this.catchUp(entry);
    });
  }

  /** The cursor moved by one event of `bytes`: stored within PROGRESS_MS, with every other moved since. */
  private moved(entry: Held, bytes: number): void {
    entry.unstored++;
    entry.unstoredBytes += bytes;
    this.dirty.add(entry);
    const { maxHeld, peerBytes, totalBytes } = this.deps.bounds;
    if (entry.unstored * 4 >= maxHeld || entry.unstoredBytes * 4 >= Math.min(peerBytes, totalBytes)) {
      if (this.storeSoon) return;
      this.storeSoon = true;
      setImmediate(() => this.storeMoved());
    } else if (!this.storeTimer) {
      this.storeTimer = setTimeout(() => this.storeMoved(), PROGRESS_MS);
      this.storeTimer.unref();
    }
  }

  private storeMoved(): void {
    clearTimeout(this.storeTimer);
    this.storeTimer = undefined;
    this.storeSoon = false;
    const entries = [...this.dirty].filter((e) => this.held.get(e.key) === e);
    this.dirty.clear();
    for (let i = 0; i < entries.length; i += KEEPALIVE_BATCH) void this.store(entries.slice(i, i + KEEPALIVE_BATCH), 0);
  }
}
