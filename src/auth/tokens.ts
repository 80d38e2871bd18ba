import { timingSafeEqual } from 'node:crypto';

/** Makes a new secret token; injected so that tests can make them predictable. */
export type TokenGenerator = () => string;

/** 256 random bits, base64url: safe in a header, a query string and a log-free URL. */
export const randomToken: TokenGenerator = () => Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url');

/** What is stored instead of a token: its SHA-256, so that a dump of the store reveals no usable token. */
export const tokenHash = (token: string): string => Bun.SHA256.hash(token, 'base64url');

/**
 * Whether `presented` is the token whose hash is `hash`. Both sides are fixed-length digests compared
 * with `timingSafeEqual`, so the time taken says nothing about where a guess differs.
 */
export function tokenMatches(presented: string | undefined, hash: string | undefined): boolean {
  if (presented === undefined || hash === undefined) return false;
  const expected = Buffer.from(hash, 'base64url');
  const actual = Bun.SHA256.hash(presented);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/** The longest bearer credential read; a JWT from a backend is far shorter. */
export const MAX_BEARER_LENGTH = 8192;

/**
 * The credential of an `Authorization: Bearer <token>` header, undefined when there is none. Any other
 * scheme, or a value that cannot be a token, counts as none: the check that needs one answers 401.
 */
export function bearerToken(authorization: string | undefined | null): string | undefined {
  if (!authorization) return undefined;
  const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(authorization);
  const token = match?.[1];
  return token && token.length <= MAX_BEARER_LENGTH ? token : undefined;
}
