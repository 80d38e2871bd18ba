import { createHmac } from 'node:crypto';
import { Type as t } from '@sinclair/typebox';
import type { Clock } from '../clock';
import type { Config } from '../config';
import { CloudflareTurn } from './cloudflare';

/** One entry of `RTCPeerConnection`'s `iceServers`, the seed's shape; `ttl` is added with TURN_SECRET. */
export interface IceServer {
  urls: string[];
  username?: string;
  credential?: string;
  /** Seconds the credential stays valid. */
  ttl?: number;
}

/** `IceServer` as the API describes it: the answer of `GET /iceServers`, and `iceServers` in a registration's. */
export const IceServerResponse = t.Object(
  {
    urls: t.Array(t.String(), { description: 'stun:, turn: and turns: URLs' }),
    username: t.Optional(t.String()),
    credential: t.Optional(t.String()),
    ttl: t.Optional(t.Integer({ description: 'seconds the credential stays valid (with TURN_SECRET)' })),
  },
  { description: "One RTCIceServer entry for RTCPeerConnection's iceServers" },
);

/** The seed's STUN server, used when nothing is configured. */
export const DEFAULT_ICE_URLS = ['stun:stun.cloudflare.com:3478'];

export type IceConfig = Pick<
  Config,
  'iceUrls' | 'turnSecret' | 'turnTtlS' | 'turnUsername' | 'turnCredential' | 'cloudflareTurnKeyId' | 'cloudflareTurnApiToken' | 'cloudflareTurnApiUrl'
>;

/**
 * The servers with their TURN credentials, for `peerId`: its id names ephemeral (TURN_SECRET) credentials.
 * It checks nothing: outside AUTH_MODE=open, call it only for a peer whose token was checked
 * (`PeerAccess.authorizePeer`) or that has just registered, and answer anyone else with `anonymousIceServer`.
 */
export interface IceServerSource {
  /** The servers to hand out now; Cloudflare's source may ask Cloudflare first. */
  get(peerId?: string): Promise<IceServer>;
  /**
   * The same without waiting for anything, for a registration's answer: undefined only while Cloudflare's
   * source has no credential in hand (the peer then asks `GET /iceServers`, which waits for one).
   */
  inHand(peerId?: string): IceServer | undefined;
}

export interface IceSourceOptions {
  /** Where the Cloudflare source reports a failed refresh. */
  log?: (message: string) => void;
  /** Cloudflare's answer is given up on after this long. */
  upstreamTimeoutMs?: number;
}

const isStun = (url: string) => /^stuns?:/i.test(url);

/** The configured STUN URLs, or the seed's STUN server when there are none: what needs no credential. */
function stunUrls(urls: readonly string[]): string[] {
  const stun = urls.filter(isStun);
  return stun.length ? stun : DEFAULT_ICE_URLS;
}

/** Whether the configuration hands out TURN credentials (fixed, TURN_SECRET or Cloudflare). */
const issuesCredentials = (config: IceConfig) =>
  Boolean(config.turnSecret || (config.turnUsername && config.turnCredential) || (config.cloudflareTurnKeyId && config.cloudflareTurnApiToken));

/**
 * `GET /iceServers` for a caller that proved no peer, outside AUTH_MODE=open: the seed's shape with the
 * STUN URLs only when TURN credentials are configured (a TURN URL is no use without them), else the
 * configured list as it is.
 */
export function anonymousIceServer(config: IceConfig): IceServer {
  const urls = config.iceUrls ?? DEFAULT_ICE_URLS;
  return { urls: issuesCredentials(config) ? stunUrls(urls) : urls };
}

/**
 * Credentials as coturn's `use-auth-secret` checks them (the TURN REST API): the username is
 * "<expiry unix seconds>:<user>" and the password is base64(HMAC-SHA1(secret, username)).
 */
export function turnRestCredential(secret: string, user: string, expiresAtS: number): { username: string; credential: string } {
  const username = `${expiresAtS}:${user}`;
  return { username, credential: createHmac('sha1', secret).update(username).digest('base64') };
}

/**
 * Answers `GET /iceServers` from the configuration: static URLs, fixed or ephemeral TURN credentials, or
 * Cloudflare's TURN service (asked once per credential lifetime, STUN only while it fails).
 */
export function iceServerSource(config: IceConfig, clock: Clock, options: IceSourceOptions = {}): IceServerSource {
  const urls = config.iceUrls ?? DEFAULT_ICE_URLS;
  const { turnSecret, turnTtlS, cloudflareTurnKeyId, cloudflareTurnApiToken } = config;
  if (cloudflareTurnKeyId && cloudflareTurnApiToken) {
    const cloudflare = new CloudflareTurn({
      keyId: cloudflareTurnKeyId,
      apiToken: cloudflareTurnApiToken,
      apiUrl: config.cloudflareTurnApiUrl,
      ttlS: turnTtlS,
      fallback: { urls: stunUrls(urls) },
      clock,
      log: options.log,
      timeoutMs: options.upstreamTimeoutMs,
    });
    return { get: () => cloudflare.get(), inHand: () => cloudflare.inHand() };
  }
  if (turnSecret) {
    const minted = (peerId?: string): IceServer => {
      const expiresAt = Math.floor(clock.now() / 1000) + turnTtlS;
      return { urls, ...turnRestCredential(turnSecret, peerId ?? 'anonymous', expiresAt), ttl: turnTtlS };
    };
    return { get: async (peerId) => minted(peerId), inHand: minted };
  }
  const fixed: IceServer = config.turnUsername && config.turnCredential ? { urls, username: config.turnUsername, credential: config.turnCredential } : { urls };
  return { get: async () => fixed, inHand: () => fixed };
}
