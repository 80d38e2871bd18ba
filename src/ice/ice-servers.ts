import { createHmac } from 'node:crypto';
import type { Clock } from '../clock';
import type { Config } from '../config';

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

export type IceConfig = Pick<Config, 'iceUrls' | 'turnSecret' | 'turnTtlS' | 'turnUsername' | 'turnCredential'>;

/**
 * Credentials as coturn's `use-auth-secret` checks them (the TURN REST API): the username is
 * "<expiry unix seconds>:<user>" and the password is base64(HMAC-SHA1(secret, username)).
 */
export function turnRestCredential(secret: string, user: string, expiresAtS: number): { username: string; credential: string } {
  const username = `${expiresAtS}:${user}`;
  return { username, credential: createHmac('sha1', secret).update(username).digest('base64') };
}

/** Answers `GET /iceServers` from the configuration: static URLs, fixed or ephemeral TURN credentials. */
export function iceServerSource(config: IceConfig, clock: Clock): (peerId?: string) => IceServer {
  const urls = config.iceUrls ?? DEFAULT_ICE_URLS;
  const { turnSecret, turnTtlS } = config;
  if (turnSecret) {
    return (peerId) => {
      const expiresAt = Math.floor(clock.now() / 1000) + turnTtlS;
      return { urls, ...turnRestCredential(turnSecret, peerId ?? 'anonymous', expiresAt), ttl: turnTtlS };
    };
  }
  const fixed: IceServer = config.turnUsername && config.turnCredential
    ? { urls, username: config.turnUsername, credential: config.turnCredential }
    : { urls };
  return () => fixed;
}
