import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, decodeProtectedHeader, errors, type JWTVerifyGetKey, jwtVerify } from 'jose';
import type { Clock } from '../clock';
import { type Config, ConfigError } from '../config';
import { SignalError } from '../errors';
import { ID_PATTERN } from '../sessions/model';
import type { Role } from '../sessions/store';

export type JwtConfig = Pick<Config, 'jwtSecret' | 'jwtPublicKeyFile' | 'jwtJwksFile' | 'jwtIssuer' | 'jwtAudience'>;

/**
 * The claims of a join JWT, as the customer's backend issues them:
 * `{"session": "<sessionId> or *", "peer": "<peerId>", "role": "publisher" | "viewer", "exp": <unix s>}`,
 * and optionally `"relay": true`: the peer may create a relay session (RELAY_MODE=admin).
 */
export interface JoinClaims {
  session: string;
  peer: string;
  role: Role;
  relay: boolean;
}

/** Clock skew tolerated on `exp` and `nbf`, in seconds. */
const CLOCK_TOLERANCE_S = 5;
const ID = new RegExp(ID_PATTERN);

type Key = Uint8Array | KeyObject | JWTVerifyGetKey;

const unauthorized = (message: string) => new SignalError('unauthorized', message);

/**
 * Verifies join JWTs with `jose` against exactly one configured key. Each kind of key admits only its
 * own algorithms (a secret HS256, an RSA key RS256, a P-256 key ES256), so that neither `none` nor a
 * token MACed with the public key (HS/RS confusion) can pass.
 */
export class JwtVerifier {
  private constructor(
    private readonly key: Key,
    private readonly algorithms: string[],
    private readonly config: JwtConfig,
    private readonly clock: Clock,
  ) {}

  /** Reads the key the configuration names; throws `ConfigError` naming the setting when it cannot be used. */
  static fromConfig(config: JwtConfig, clock: Clock): JwtVerifier {
    if (config.jwtSecret) return new JwtVerifier(new TextEncoder().encode(config.jwtSecret), ['HS256'], config, clock);
    if (config.jwtPublicKeyFile) {
      const { key, algorithm } = readPublicKey(config.jwtPublicKeyFile);
      return new JwtVerifier(key, [algorithm], config, clock);
    }
    if (config.jwtJwksFile) return new JwtVerifier(readJwks(config.jwtJwksFile), ['RS256', 'ES256'], config, clock);
    throw new ConfigError('AUTH_MODE=jwt needs JWT_SECRET, JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE');
  }

  /** Checks signature, algorithm, expiry and claims; throws a 401 `SignalError` that says what is wrong. */
  async verify(jwt: string): Promise<JoinClaims> {
    if (jwt.split('.').length !== 3) throw unauthorized('the bearer credential is not a JWT (three base64url parts separated by dots)');
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(jwt, this.key as Uint8Array, {
        algorithms: this.algorithms,
        requiredClaims: ['exp'],
        currentDate: new Date(this.clock.now()),
        clockTolerance: CLOCK_TOLERANCE_S,
        issuer: this.config.jwtIssuer,
        audience: this.config.jwtAudience,
      }));
    } catch (e) {
      throw this.explain(e, jwt);
    }
    const { session, peer, role, relay } = payload;
    if (typeof session !== 'string' || (session !== '*' && !ID.test(session))) {
      throw unauthorized('the JWT needs a "session" claim: a session id, or "*" for any session');
    }
    if (typeof peer !== 'string' || !ID.test(peer)) throw unauthorized('the JWT needs a "peer" claim: the peer id it admits');
    if (role !== 'publisher' && role !== 'viewer') throw unauthorized('the JWT needs a "role" claim: "publisher" or "viewer"');
    if (relay !== undefined && typeof relay !== 'boolean') throw unauthorized('the JWT\'s "relay" claim, when present, is true or false');
    return { session, peer, role, relay: relay === true };
  }

  private explain(e: unknown, jwt: string): SignalError {
    if (e instanceof errors.JWTExpired) return unauthorized('the JWT has expired');
    if (e instanceof errors.JWTClaimValidationFailed) {
      const claim = e.claim.replace(/[^a-z]/gi, '').slice(0, 16);
      return unauthorized(e.reason === 'missing' ? `the JWT has no "${claim}" claim` : `the JWT's "${claim}" claim is not accepted here`);
    }
    if (e instanceof errors.JOSEAlgNotAllowed || e instanceof errors.JOSENotSupported) {
      return unauthorized(`the JWT is signed with ${algorithmOf(jwt)}; this server accepts only ${this.algorithms.join(', ')}`);
    }
    if (e instanceof errors.JWSSignatureVerificationFailed) return unauthorized('the JWT signature does not match the configured key');
    if (e instanceof errors.JWKSNoMatchingKey) return unauthorized('no key in JWT_JWKS_FILE matches the JWT (its kid and alg)');
    if (e instanceof errors.JWKSMultipleMatchingKeys) return unauthorized('several keys in JWT_JWKS_FILE match the JWT: give it a kid');
    return unauthorized('the bearer credential is not a valid JWT');
  }
}

/** The `alg` a JWT claims, made safe to echo: short, and nothing but name characters. */
function algorithmOf(jwt: string): string {
  try {
    const alg = decodeProtectedHeader(jwt).alg;
    return typeof alg === 'string' ? `"${alg.replace(/[^A-Za-z0-9_-]/g, '').slice(0, 16)}"` : 'no algorithm';
  } catch {
    return 'an unreadable algorithm';
  }
}

function readPublicKey(path: string): { key: KeyObject; algorithm: string } {
  let key: KeyObject;
  try {
    key = createPublicKey(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ConfigError(`JWT_PUBLIC_KEY_FILE=${path} cannot be used: ${(e as Error).message}`);
  }
  if (key.asymmetricKeyType === 'rsa') return { key, algorithm: 'RS256' };
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return { key, algorithm: 'ES256' };
  throw new ConfigError(`JWT_PUBLIC_KEY_FILE=${path} is neither an RSA nor a P-256 public key (for RS256 or ES256)`);
}

function readJwks(path: string): JWTVerifyGetKey {
  try {
    const jwks = JSON.parse(readFileSync(path, 'utf8'));
    if (!Array.isArray(jwks?.keys) || jwks.keys.length === 0) throw new Error('expected {"keys": [...]} with at least one key');
    return createLocalJWKSet(jwks);
  } catch (e) {
    throw new ConfigError(`JWT_JWKS_FILE=${path} cannot be used: ${(e as Error).message}`);
  }
}
