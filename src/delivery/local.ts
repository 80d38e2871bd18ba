import type { Delivered, Delivery, EventSink, PeerAddress } from './delivery';
import { Mailbox } from './mailbox';
import { type DeliveryObserver, noObserver } from './observer';

/** Ids cannot contain '/', so this key is unambiguous. */
const keyOf = (peer: PeerAddress) => `${peer.sessionId}/${peer.peerId}`;

/** Delivery within one process: a Map of mailboxes, each with at most one attached stream. */
export class LocalDelivery implements Delivery {
  private readonly mailboxes = new Map<string, Mailbox>();

  /**
   * @param maxQueue events held per peer, and written events kept for resume
   * @param observer told how long each client message took from accepted to written
   */
  constructor(
    private readonly maxQueue: number,
    private readonly observer: DeliveryObserver = noObserver,
  ) {}

  open(peer: PeerAddress): number {
    const key = keyOf(peer);
    let box = this.mailboxes.get(key);
    if (box) box.reset();
    else this.mailboxes.set(key, (box = new Mailbox(this.maxQueue, this.maxQueue, this.observer)));
    return box.start;
  }

  hasRoom(peer: PeerAddress): boolean {
    const box = this.mailboxes.get(keyOf(peer));
    return box !== undefined && box.held < this.maxQueue;
  }

  deliver(peer: PeerAddress, json: string, fromServer: boolean): Delivered {
    return this.mailbox(peer).append(json, fromServer);
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

  close(peer: PeerAddress, finalJson?: string): void {
    const key = keyOf(peer);
    const box = this.mailboxes.get(key);
    if (!box) return;
    this.mailboxes.delete(key);
    if (finalJson !== undefined && box.sink) box.append(finalJson, true);
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

  private mailbox(peer: PeerAddress): Mailbox {
    const box = this.mailboxes.get(keyOf(peer));
    // The service only addresses registered peers; a miss here is a bug, not bad input.
    if (!box) throw new Error(`no mailbox for ${keyOf(peer)}`);
    return box;
  }
}
