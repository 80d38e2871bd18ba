// How many peers the relay carries: each one costs a werift connection, a UDP socket, a DTLS certificate
// and a share of the one core that forwards every packet. Counted from registration to leave, apart from
// the engine, so that a registration is refused in its own answer even before werift is loaded.
import { type Config, relayPorts } from '../config';
import { SignalError } from '../errors';
import { addressKey } from '../limits/client-ip';

export type RelayCapacityConfig = Pick<Config, 'maxRelayPeers' | 'maxRelayPeersPerIp' | 'relayPortRange'>;

/** Seconds a client refused for a full relay is told to wait: peers come and go in that time. */
const FULL_RETRY_S = 30;

/** 429: an address holds MAX_RELAY_PEERS_PER_IP relay registrations (in the process, or in the cluster). */
export const relayPeersRefusal = (max: number): SignalError =>
  new SignalError('too_many_relay_peers', `this address has ${max} peers in relay sessions, the most allowed (MAX_RELAY_PEERS_PER_IP); one must leave first`, FULL_RETRY_S);

/** 503: in a cluster, no instance has room for the relay session (RELAY_CAPACITY), or its owner has none for one more peer. */
export const clusterRelayFull = (sessionId: string, isNew: boolean): SignalError =>
  new SignalError(
    'relay_full',
    isNew
      ? 'every instance of this cluster carries its relay capacity (RELAY_CAPACITY); retry later'
      : `the instance that carries relay session ${sessionId} has no room for another peer (RELAY_CAPACITY); retry later`,
    FULL_RETRY_S,
  );

/** One relay peer's place, held from its registration until it leaves; `release` twice does nothing. */
export interface RelaySlot {
  /** The client address it counts under, if it came with one. */
  readonly key: string | undefined;
  release(): void;
}

/**
 * The relay's places: at most MAX_RELAY_PEERS in the process, MAX_RELAY_PEERS_PER_IP per client address
 * (IPv6 by /64, as every limit counts). A peer handled in-process, without an address, counts for the
 * process only.
 */
export class RelayCapacity {
  private held = 0;
  private readonly perAddress = new Map<string, number>();
  /** MAX_RELAY_PEERS, or fewer when RELAY_PORT_RANGE has fewer ports: each connection takes one. */
  readonly limit: number;

  constructor(private readonly config: RelayCapacityConfig) {
    const ports = relayPorts(config);
    this.limit = ports ? Math.min(config.maxRelayPeers, ports[1] - ports[0] + 1) : config.maxRelayPeers;
  }

  /** Peers holding a place now. */
  get size(): number {
    return this.held;
  }

  /** Places held from one client address now. */
  heldBy(address: string): number {
    return this.perAddress.get(addressKey(address)) ?? 0;
  }

  /**
   * A place for a peer registering from `address`, or a refusal: 503 `relay_full` when the process
   * carries its limit, 429 `too_many_relay_peers` when the address does. `replacing` is the place of the
   * registration this one takes over: it is given back only once the new one is granted, and a takeover
   * from the same address keeps it.
   */
  take(address: string | undefined, replacing?: RelaySlot): RelaySlot {
    const key = address === undefined ? undefined : addressKey(address);
    if (replacing && replacing.key === key) return replacing;
    const { maxRelayPeersPerIp } = this.config;
    if (!replacing && this.held >= this.limit) {
      throw new SignalError(
        'relay_full',
        `this server relays media for ${this.limit} peers, its limit (MAX_RELAY_PEERS, and one port each in RELAY_PORT_RANGE); retry later`,
        FULL_RETRY_S,
      );
    }
    const fromKey = key === undefined ? 0 : (this.perAddress.get(key) ?? 0);
    if (key !== undefined && maxRelayPeersPerIp > 0 && fromKey >= maxRelayPeersPerIp) throw relayPeersRefusal(maxRelayPeersPerIp);
    this.held++;
    if (key !== undefined) this.perAddress.set(key, fromKey + 1);
    replacing?.release();
    let released = false;
    return {
      key,
      release: () => {
        if (released) return;
        released = true;
        this.held--;
        if (key === undefined) return;
        const left = (this.perAddress.get(key) ?? 1) - 1;
        if (left > 0) this.perAddress.set(key, left);
        else this.perAddress.delete(key);
      },
    };
  }
}
