import { type Clock, Ticker } from '../clock';
import { type EventMembers, eventMembers } from '../delivery/delivery';

export interface Pingable {
  ping(event: EventMembers): void;
}

/** The seed's ping event at `nowMs`, as every stream and socket writes it. */
export const pingEvent = (nowMs: number): EventMembers => eventMembers(JSON.stringify({ type: 'ping', time: new Date(nowMs).toISOString() }));

/**
 * One timer for every open stream, rather than one per stream: each tick writes the seed's ping event,
 * which keeps proxies and Bun's idle timeout from closing a quiet stream and reveals dead clients.
 * It runs only while a stream is open.
 */
export class Heartbeat {
  private readonly streams = new Set<Pingable>();
  private readonly ticker: Ticker;

  constructor(
    private readonly clock: Clock,
    intervalMs: number,
  ) {
    this.ticker = new Ticker(clock, intervalMs, () => this.beat());
  }

  add(stream: Pingable): void {
    this.streams.add(stream);
    if (this.streams.size === 1) this.ticker.start();
  }

  delete(stream: Pingable): void {
    if (this.streams.delete(stream) && this.streams.size === 0) this.ticker.stop();
  }

  get size(): number {
    return this.streams.size;
  }

  private beat(): void {
    const event = pingEvent(this.clock.now());
    for (const stream of this.streams) stream.ping(event);
  }
}
