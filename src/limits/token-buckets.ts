import type { Clock } from '../clock';

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date, ms since the epoch. */
  at: number;
}

/**
 * One token bucket per key (a client address, a peer): each holds up to `burst` tokens and refills
 * at `ratePerS`. Buckets that have refilled completely are forgotten lazily, and the number kept is
 * capped, so that a flood of new keys costs bounded memory.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;
  /** Past this many buckets, full ones are swept before another is added. */
  private sweepAt: number;

  constructor(
    private readonly clock: Clock,
    ratePerS: number,
    private readonly burst: number,
    private readonly maxKeys = 100_000,
  ) {
    this.perMs = ratePerS / 1000;
    this.sweepAt = Math.min(1024, maxKeys);
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Takes one token for `key`. Returns 0 when it was there, else the whole seconds until one will be. */
  take(key: string): number {
    const now = this.clock.now();
    let bucket = this.buckets.get(key);
    if (bucket) {
      bucket.tokens = Math.min(this.burst, bucket.tokens + (now - bucket.at) * this.perMs);
      bucket.at = now;
    } else {
      if (this.buckets.size >= this.sweepAt) this.sweep(now);
      bucket = { tokens: this.burst, at: now };
      this.buckets.set(key, bucket);
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.perMs / 1000));
  }

  /** Gives back a token that `take` took, up to the burst: what it was taken for did not happen. */
  giveBack(key: string): void {
    const bucket = this.buckets.get(key);
    if (bucket) bucket.tokens = Math.min(this.burst, bucket.tokens + 1);
  }

  /** Forgets a key's bucket (a peer that left). */
  delete(key: string): void {
    this.buckets.delete(key);
  }

  private sweep(now: number): void {
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + (now - bucket.at) * this.perMs >= this.burst) this.buckets.delete(key);
    }
    // Still too many busy keys: the oldest tenth goes (and starts full again if it comes back). Evicting
    // a whole tenth at once keeps the cost of sweeping a constant per new key under a flood.
    if (this.buckets.size >= this.maxKeys) {
      const keep = Math.floor(this.maxKeys * 0.9);
      for (const key of this.buckets.keys()) {
        if (this.buckets.size <= keep) break;
        this.buckets.delete(key);
      }
    }
    // Sweep again when the map has doubled, so that sweeping stays cheap per insertion.
    this.sweepAt = Math.min(this.maxKeys, Math.max(1024, this.buckets.size * 2));
  }
}
