import type { Clock } from '../clock';
import type { Config } from '../config';
import { SignalError } from '../errors';
import type { RateTicket } from '../sessions/backend';
import { addressKey } from './client-ip';
import { TokenBuckets } from './token-buckets';

export type LimitsConfig = Pick<
  Config,
  | 'registerRatePerMin'
  | 'registerBurst'
  | 'messageRatePerS'
  | 'messageBurst'
  | 'peerMessageRatePerS'
  | 'peerMessageBurst'
  | 'maxStreamsPerIp'
  | 'iceServersRatePerMin'
  | 'iceServersBurst'
>;

/** Gives back what `openStream` took. Calling it twice does nothing. */
export type Release = () => void;

const NOTHING_TO_RELEASE: Release = () => {};

const NO_RATE: RateTicket = { take: () => undefined, giveBack: () => {} };

const limited = (what: string, retryAfterS: number) => new SignalError('rate_limited', `too many ${what}; retry in ${retryAfterS} s`, retryAfterS);

/**
 * Takes a token of the client address's bucket, or refuses with 429. The address is looked up only when
 * the limit is on (`buckets` set): finding it costs every request something.
 */
function perAddress(buckets: TokenBuckets | undefined, addressOf: () => string | undefined, what: string): void {
  if (!buckets) return;
  const address = addressOf();
  if (address === undefined) return;
  const wait = buckets.take(addressKey(address));
  if (wait) throw limited(what, wait);
}

/**
 * The per-client limits: token buckets for registrations, messages and `GET /iceServers` per client
 * address, one for messages per peer, and a count of open streams per address. A request without a known address
 * (handled in-process, with no socket) is limited per peer only.
 */
export class Limits {
  private readonly registers: TokenBuckets | undefined;
  private readonly messages: TokenBuckets | undefined;
  private readonly peerMessages: TokenBuckets | undefined;
  private readonly iceRequests: TokenBuckets | undefined;
  private readonly streams = new Map<string, number>();

  constructor(
    private readonly config: LimitsConfig,
    clock: Clock,
  ) {
    const { registerRatePerMin, registerBurst, messageRatePerS, messageBurst, peerMessageRatePerS, peerMessageBurst } = config;
    this.registers = registerRatePerMin > 0 ? new TokenBuckets(clock, registerRatePerMin / 60, registerBurst) : undefined;
    this.messages = messageRatePerS > 0 ? new TokenBuckets(clock, messageRatePerS, messageBurst) : undefined;
    this.peerMessages = peerMessageRatePerS > 0 ? new TokenBuckets(clock, peerMessageRatePerS, peerMessageBurst) : undefined;
    const { iceServersRatePerMin, iceServersBurst } = config;
    this.iceRequests = iceServersRatePerMin > 0 ? new TokenBuckets(clock, iceServersRatePerMin / 60, iceServersBurst) : undefined;
  }

  /** Before `POST /register`. */
  register(addressOf: () => string | undefined): void {
    perAddress(this.registers, addressOf, 'registrations from this address');
  }

  /** Before `GET /iceServers`: each answer may be a TURN credential, or cost a call to the TURN provider. */
  iceServers(addressOf: () => string | undefined): void {
    perAddress(this.iceRequests, addressOf, 'GET /iceServers from this address');
  }

  /**
   * Before a message's body is read: counts it for the client address. The address is looked up only
   * when this limit is on: finding it costs every message something.
   */
  message(addressOf: () => string | undefined): void {
    perAddress(this.messages, addressOf, 'messages from this address');
  }

  /** Counts a message against the sending peer's own rate (a WebSocket frame: its sender is let in already). */
  peerMessage(sessionId: string, peerId: string): void {
    const limited = this.peerMessageTicket(sessionId, peerId).take();
    if (limited) throw limited;
  }

  /**
   * A message against the sending peer's own rate, taken by `send` once the sender is let in (see
   * `SendGuard`), so that a request without its token costs the peer nothing.
   */
  peerMessageTicket(sessionId: string, peerId: string): RateTicket {
    const buckets = this.peerMessages;
    if (!buckets) return NO_RATE;
    const key = `${sessionId}/${peerId}`;
    return {
      take: () => {
        const wait = buckets.take(key);
        return wait ? limited(`messages from peer ${peerId}`, wait) : undefined;
      },
      giveBack: () => buckets.giveBack(key),
    };
  }

  /** Takes one of the address's stream slots, or refuses with 429; release it when the stream ends. */
  openStream(address: string | undefined): Release {
    const cap = this.config.maxStreamsPerIp;
    if (address === undefined || cap === 0) return NOTHING_TO_RELEASE;
    const key = addressKey(address);
    const open = this.streams.get(key) ?? 0;
    if (open >= cap) throw new SignalError('too_many_streams', `this address has ${cap} event streams open, the most allowed`, 5);
    this.streams.set(key, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.streams.get(key) ?? 1) - 1;
      if (left > 0) this.streams.set(key, left);
      else this.streams.delete(key);
    };
  }
}
