/** Cancels a scheduled callback. Calling it twice, or after the callback ran, does nothing. */
export type Cancel = () => void;

/**
 * Time as the server sees it. Injected everywhere a timeout or a timestamp matters, so that tests
 * move time forward instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds. */
  schedule(ms: number, fn: () => void): Cancel;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  schedule(ms, fn) {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
};

/**
 * Calls `fn` every `ms` milliseconds on `clock` until stopped: a `start()`/`stop()` pair, so that
 * whoever owns a periodic job also owns its end.
 */
export class Ticker {
  private cancel: Cancel | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly ms: number,
    private readonly fn: () => void,
  ) {}

  start(): void {
    if (this.cancel) return;
    const tick = () => {
      this.cancel = this.clock.schedule(this.ms, tick);
      this.fn();
    };
    this.cancel = this.clock.schedule(this.ms, tick);
  }

  stop(): void {
    this.cancel?.();
    this.cancel = undefined;
  }
}
