import type { Config } from '../config';
import { SignalError } from '../errors';

export type HoldingsConfig = Pick<Config, 'maxSessionsPerIp' | 'maxPeersPerIp'>;

/**
 * The rule on what one client address may keep alive through `POST /register`: the sessions it created
 * and the registrations it made (a registration it makes again of an id it holds counts once). Both
 * stores apply it inside the registration, so that it is atomic with it: the one-process store with
 * `AddressHoldings`, the cluster's register script with the same caps (`holdingArgs`) and counts kept
 * in Redis beside the registrations, so that it holds cluster-wide. `origin` is the address's key
 * (`addressKey`); without one (a request handled in-process) nothing is counted.
 */
export const holdingRefusals = {
  sessions: (cap: number) =>
    new SignalError('too_many_sessions', `this address has created ${cap} sessions that are still open, the most allowed; end one (DELETE /session) or wait for one to end`, 5),
  peers: (cap: number) =>
    new SignalError('too_many_peers', `this address has ${cap} registrations alive, the most allowed; leave with one (DELETE /register) or wait for one to time out`, 5),
};

/** The caps as the cluster's register script takes them (0: no cap). */
export const holdingArgs = (config: HoldingsConfig): string[] => [String(config.maxSessionsPerIp), String(config.maxPeersPerIp)];

/** The one-process count of what each address holds: an entry goes when its count does. */
export class AddressHoldings {
  private readonly sessions = new Map<string, number>();
  private readonly peers = new Map<string, number>();

  constructor(private readonly config: HoldingsConfig) {}

  /**
   * Throws unless `origin` may make this registration: a new session (`newSession`), and a registration
   * that it does not hold already (`holdsIt`).
   */
  check(origin: string | undefined, newSession: boolean, holdsIt: boolean): void {
    if (origin === undefined) return;
    const { maxSessionsPerIp, maxPeersPerIp } = this.config;
    if (newSession && maxSessionsPerIp > 0 && (this.sessions.get(origin) ?? 0) >= maxSessionsPerIp) throw holdingRefusals.sessions(maxSessionsPerIp);
    if (!holdsIt && maxPeersPerIp > 0 && (this.peers.get(origin) ?? 0) >= maxPeersPerIp) throw holdingRefusals.peers(maxPeersPerIp);
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
