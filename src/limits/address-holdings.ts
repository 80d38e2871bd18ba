import type { Config } from '../config';

export type HoldingsConfig = Pick<Config, 'maxSessionsPerIp' | 'maxPeersPerIp'>;

/**
 * What each client address keeps alive through `POST /register`, in one process: the sessions it
 * created and the registrations it made (a registration it makes again of an id it holds counts once);
 * an entry goes when its count does. The caps on them (MAX_SESSIONS_PER_IP, MAX_PEERS_PER_IP) are
 * admission caps (see `ADMISSION_CAPS`), checked inside the registration so that they are atomic with
 * it; the cluster keeps the same counts in Redis beside the registrations, so that they hold
 * cluster-wide. `origin` is the address's key (`addressKey`); without one (a request handled
 * in-process) nothing is counted.
 */
export class AddressHoldings {
  private readonly sessions = new Map<string, number>();
  private readonly peers = new Map<string, number>();

  /** The sessions `origin` created that are open. */
  sessionsOf(origin: string): number {
    return this.sessions.get(origin) ?? 0;
  }

  /** The registrations `origin` made that are alive. */
  peersOf(origin: string): number {
    return this.peers.get(origin) ?? 0;
  }

  /** `origin` created a session (+1) or one it created ended (-1). */
  session(origin: string | undefined, delta: 1 | -1): void {
    change(this.sessions, origin, delta);
  }

  /** `origin` made a registration (+1) or one it made ended or was taken over (-1). */
  peer(origin: string | undefined, delta: 1 | -1): void {
    change(this.peers, origin, delta);
  }
}

function change(counts: Map<string, number>, origin: string | undefined, delta: number): void {
  if (origin === undefined) return;
  const next = (counts.get(origin) ?? 0) + delta;
  if (next > 0) counts.set(origin, next);
  else counts.delete(origin);
}
