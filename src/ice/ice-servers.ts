import { createHmac } from 'node:crypto';
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

/** The seed's STUN server, used when nothing is configured. */
export const DEFAULT_ICE_URLS = ['stun:stun.cloudflare.com:3478'];

export type IceConfig = Pick<
  Config,
  'iceUrls' | 'turnSecret' | 'turnTtlS' | 'turnUsername' | 'turnCredential' | 'cloudflareTurnKeyId' | 'cloudflareTurnApiToken' | 'cloudflareTurnApiUrl'
>;

/** Answers `GET /iceServers` for a peer (its id names ephemeral credentials). */
export type IceServerSource = (peerId?: string) => Promise<IceServer>;

export interface IceSourceOptions {
  /** Where the Cloudflare source reports a failed refresh. */
  log?: (message: string) => void;
  /** Cloudflare's answer is given up on after this long. */
  upstreamTimeoutMs?: number;
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
    const stun = urls.filter((u) => /^stuns?:/i.test(u));
    const cloudflare = new CloudflareTurn({
      keyId: cloudflareTurnKeyId,
      apiToken: cloudflareTurnApiToken,
      apiUrl: config.cloudflareTurnApiUrl,
      ttlS: turnTtlS,
      fallback: { urls: stun.length ? stun : DEFAULT_ICE_URLS },
      clock,
      log: options.log,
      timeoutMs: options.upstreamTimeoutMs,
    });
    return () => cloudflare.get();
  }
  if (turnSecret) {
    return async (peerId) => {
      const expiresAt = Math.floor(clock.now() / 1000) + turnTtlS;
      return { urls, ...turnRestCredential(turnSecret, peerId ?? 'anonymous', expiresAt), ttl: turnTtlS };
    };
  }
  const fixed: IceServer = config.turnUsername && config.turnCredential
    ? { urls, username: config.turnUsername, credential: config.turnCredential }
    : { urls };
  return async () => fixed;
}
