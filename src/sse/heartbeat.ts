import { type Clock, Ticker } from '../clock';
import { type EventMembers, eventMembers } from '../delivery/delivery';

export interface Pingable {
  ping(ping: EventMembers): void;
}

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
    const ping = eventMembers(JSON.stringify({ type: 'ping', time: new Date(this.clock.now()).toISOString() }));
    for (const stream of this.streams) stream.ping(ping);
  }
}
