import type { Clock } from '../clock';
import type { Config } from '../config';
import type { Readiness } from '../health/readiness';
import type { Logger } from '../log/logger';

/** A listening server: Bun's `Server`. */
export interface StoppableServer {
  /**
   * Stops listening at once. Without `closeActiveConnections` it resolves once every open request and
   * response is done (an open stream included); with it, it drops them.
   */
  stop(closeActiveConnections?: boolean): Promise<unknown>;
}

export interface DrainDeps {
  readiness: Pick<Readiness, 'drain'>;
  /**
   * Ends every stream, and every stream that opens from then on. `handover`, when there is one, runs
   * first, while the streams are still open: a cluster hands its relay sessions to other instances
   * (their new offers go out through those streams), within the time it is given.
   */
  streams: { shutdown(): void; handover?(deadlineMs: number): Promise<void> };
  clock: Pick<Clock, 'schedule'>;
  logger: Logger;
}

export type DrainOutcome = 'drained' | 'forced';

/**
 * A graceful stop, as load balancers expect it: report `draining`, stop accepting connections, end
 * every event stream (EventSource clients reconnect, to another instance), let the requests in
 * flight finish, and close whatever is still open at the deadline.
 */
export class Drain {
  private running: Promise<DrainOutcome> | undefined;

  constructor(
    private readonly config: Pick<Config, 'shutdownTimeoutMs'>,
    private readonly deps: DrainDeps,
  ) {}

  /** Drains `server`; calling it again while it runs returns the same outcome. */
  run(server: StoppableServer): Promise<DrainOutcome> {
    this.running ??= this.drain(server);
    return this.running;
  }

  private async drain(server: StoppableServer): Promise<DrainOutcome> {
    const { readiness, streams, clock, logger } = this.deps;
    const timeoutMs = this.config.shutdownTimeoutMs;
    logger.info('draining', { timeoutMs });
    readiness.drain();
    // Before anything closes: the relay's media moves while every peer can still hear of it. Half the
    // deadline at most, so that the requests in flight keep the other half.
    // One process has nothing to hand over: it drains without waiting a turn.
    if (streams.handover) await streams.handover(Math.floor(timeoutMs / 2));
    // The listener closes first, so that the clients of the streams ended next reconnect elsewhere.
    const stopped = server.stop(false).then(() => 'drained' as const);
    streams.shutdown();
    let cancel = () => {};
    const deadline = new Promise<'forced'>((resolve) => {
      cancel = clock.schedule(timeoutMs, () => resolve('forced'));
    });
    const outcome = await Promise.race([stopped, deadline]);
    cancel();
    if (outcome === 'forced') {
      logger.warn('requests still open at the shutdown deadline: closing them', { timeoutMs });
      await server.stop(true);
      await stopped;
    }
    logger.info('stopped', { outcome });
    return outcome;
  }
}
