import type { Clock } from '../clock';

/**
 * Whether a backend the server depends on can be used now (a Redis connection, say). It should be
 * cheap: it runs on every `GET /readyz`. Throwing, rejecting or not answering in time count as failing.
 */
export type ReadinessCheck = () => boolean | Promise<boolean>;

export type CheckState = 'ok' | 'failing';

export interface ReadinessReport {
  /** `ready` takes work; `draining` is shutting down; `not_ready` has a failing check. */
  status: 'ready' | 'draining' | 'not_ready';
  checks: Record<string, CheckState>;
}

/** How long a check may take before it counts as failing. */
export const CHECK_TIMEOUT_MS = 1000;

/**
 * Whether this server should be sent work: not while it drains, and not while a backend it was
 * configured with is unreachable. Backends add their check with `register()`.
 */
export class Readiness {
  private readonly checks = new Map<string, ReadinessCheck>();
  private draining = false;

  constructor(
    private readonly clock: Pick<Clock, 'schedule'>,
    private readonly timeoutMs = CHECK_TIMEOUT_MS,
  ) {}

  /** Adds a check under the name `/readyz` shows it by (`redis`); a second one of that name replaces it. */
  register(name: string, check: ReadinessCheck): void {
    this.checks.set(name, check);
  }

  /** From now on the server reports `draining`: load balancers stop sending it work. */
  drain(): void {
    this.draining = true;
  }

  async report(): Promise<ReadinessReport> {
    const names = [...this.checks.keys()];
    const states = await Promise.all([...this.checks.values()].map((check) => this.run(check)));
    const checks: Record<string, CheckState> = {};
    names.forEach((name, i) => {
      checks[name] = states[i] as CheckState;
    });
    const status = this.draining ? 'draining' : states.includes('failing') ? 'not_ready' : 'ready';
    return { status, checks };
  }

  private run(check: ReadinessCheck): Promise<CheckState> {
    return new Promise<CheckState>((resolve) => {
      const cancel = this.clock.schedule(this.timeoutMs, () => resolve('failing'));
      const settle = (state: CheckState) => {
        cancel();
        resolve(state);
      };
      try {
        Promise.resolve(check()).then(
          (ok) => settle(ok ? 'ok' : 'failing'),
          () => settle('failing'),
        );
      } catch {
        settle('failing');
      }
    });
  }
}
