import { refusals } from '../errors';
import type { Delivered, Delivery, EventMembers, EventSink, PeerAddress } from './delivery';
import { EventBytes, Mailbox } from './mailbox';
import { type DeliveryObserver, noObserver } from './observer';
import { type EventBounds, eventSize, SERVER_NOTICE, type Topic } from './rules';

/** Ids cannot contain '/', so this key is unambiguous. */
const keyOf = (peer: PeerAddress) => `${peer.sessionId}/${peer.peerId}`;

/** Delivery within one process: a Map of mailboxes, each with at most one attached stream. */
export class LocalDelivery implements Delivery {
  private readonly mailboxes = new Map<string, Mailbox>();
  private readonly pool = new EventBytes();

  /**
   * @param bounds events and bytes held per peer and in all, and written events kept for resume
   * @param observer told how long each client message took from accepted to written
   */
  constructor(
    private readonly bounds: EventBounds,
    private readonly observer: DeliveryObserver = noObserver,
  ) {}

  get eventBytes(): number {
    return this.pool.all;
  }

  open(peer: PeerAddress): number {
    const key = keyOf(peer);
    let box = this.mailboxes.get(key);
    if (box) box.reset();
    else this.mailboxes.set(key, (box = new Mailbox(this.bounds, this.pool, this.observer)));
    return box.start;
  }

  checkRoom(peers: readonly PeerAddress[], bytes: number): void {
    for (const peer of peers) if (this.mailbox(peer).refusal(bytes)) throw refusals.queueBroadcast(peer.peerId);
    if (this.pool.held + bytes * peers.length > this.bounds.totalBytes) throw this.full();
  }

  deliver(peer: PeerAddress, members: EventMembers, topic: Topic, size = eventSize(members)): Delivered {
    const box = this.mailbox(peer);
    // Only undelivered events count here: those kept for resume give way below.
    if (!topic.fromServer && this.pool.held + size > this.bounds.totalBytes) throw this.full();
    const delivered = box.append(members, topic, size);
    this.reclaim(box);
    return delivered;
  }

  attach(peer: PeerAddress, sink: EventSink, lastEventId?: number): void {
    this.mailbox(peer).attach(sink, lastEventId);
  }

  detach(peer: PeerAddress, sink: EventSink): boolean {
    const box = this.mailboxes.get(keyOf(peer));
    if (box?.sink !== sink) return false;
    box.sink = undefined;
    return true;
  }

  isAttached(peer: PeerAddress): boolean {
    return this.mailboxes.get(keyOf(peer))?.sink !== undefined;
  }

  close(peer: PeerAddress, finalEvent?: EventMembers): void {
    const key = keyOf(peer);
    const box = this.mailboxes.get(key);
    if (!box) return;
    this.mailboxes.delete(key);
    if (finalEvent !== undefined && box.sink) box.append(finalEvent, SERVER_NOTICE);
    box.discard();
    const sink = box.sink;
    box.sink = undefined;
    sink?.close();
  }

  closeAll(): void {
    for (const box of this.mailboxes.values()) {
      const sink = box.sink;
      box.sink = undefined;
      sink?.close();
    }
  }

  /**
   * Keeps the process under its byte budget: written events kept for resume go, the appending peer's
   * first, then other peers' (the oldest mailboxes first). Runs only when the budget is passed.
   */
  private reclaim(box: Mailbox): void {
    let excess = this.pool.all - this.bounds.totalBytes;
    // Past it with nothing kept for resume (only server events push it there), there is nothing to drop.
    if (excess <= 0 || this.pool.all === this.pool.held) return;
    excess -= box.dropRetained(excess);
    for (const other of this.mailboxes.values()) {
      if (excess <= 0 || this.pool.all === this.pool.held) return;
      excess -= other.dropRetained(excess);
    }
  }

  private full() {
    return refusals.queueTotal(this.pool.held, this.bounds.totalBytes, 'server');
  }

  private mailbox(peer: PeerAddress): Mailbox {
    const box = this.mailboxes.get(keyOf(peer));
    // The service only addresses registered peers; a miss here is a bug, not bad input.
    if (!box) throw new Error(`no mailbox for ${keyOf(peer)}`);
    return box;
  }
}
