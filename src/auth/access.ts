import { type Config, relayMode } from '../config';
import { SignalError } from '../errors';
import { type Admit, type AdmitPeer, type AdmitSession, type Awaitable, after, type PeerDirectory, type SenderCredential } from '../sessions/backend';
import type { PeerAuth, Role } from '../sessions/store';
import type { JoinClaims, JwtVerifier } from './jwt';
import { type TokenGenerator, tokenHash, tokenMatches } from './tokens';

export type AccessConfig = Pick<Config, 'authMode' | 'adminToken' | 'relayMode'>;

export interface AccessDeps {
  /** Where the credentials of registrations are kept: the signalling backend. */
  directory: PeerDirectory;
  newToken: TokenGenerator;
  /** Present in jwt mode. */
  jwt?: JwtVerifier;
}

/** A registration about to happen: the token it will hand out, and the check to run atomically with it. */
export interface Ticket {
  /** The new peer token, returned once by POST /register; only its hash is kept. */
  token: string;
  admit: Admit;
  /** Whether this registration may create a relay session: RELAY_MODE=open, or admin with a JWT whose "relay" claim is true. */
  createsRelay: boolean;
}

const unauthorized = (message: string) => new SignalError('unauthorized', message);
const forbidden = (message: string) => new SignalError('forbidden', message);
const noop = () => {};

/**
 * Who may do what, by AUTH_MODE. Every check reads the credentials kept with the registrations in the
 * backend, so that a backend shared by several instances (Redis) shares them too. Each check throws a
 * 401 (no credential), 403 (the wrong one) or 404 (no such session or peer) `SignalError`. The checks
 * answer synchronously when the backend does (one process), else with a promise.
 */
export class PeerAccess {
  private readonly adminHash: string | undefined;

  constructor(
    private readonly config: AccessConfig,
    private readonly deps: AccessDeps,
  ) {
    this.adminHash = config.adminToken === undefined ? undefined : tokenHash(config.adminToken);
  }

  get mode(): Config['authMode'] {
    return this.config.authMode;
  }

  /**
   * Prepares `POST /register`: verifies a JWT when one is presented in jwt mode (the only slow part),
   * and returns the synchronous admission check that the service runs inside the registration.
   * `requested` is the role the peer asks for (`?role=`): see `requestRole`.
   */
  async ticket(sessionId: string, peerId: string, bearer: string | undefined, requested?: Role): Promise<Ticket> {
    const token = this.deps.newToken();
    const hash = tokenHash(token);
    const { jwt } = this.deps;
    let claims: JoinClaims | undefined;
    let jwtError: SignalError | undefined;
    if (this.config.authMode === 'jwt' && jwt && bearer !== undefined) {
      try {
        claims = await jwt.verify(bearer);
      } catch (e) {
        if (!(e instanceof SignalError)) throw e;
        jwtError = e;
      }
    }
    const admit: Admit = (session, current) => {
      const granted = this.admit(sessionId, peerId, bearer, session, current, claims, jwtError);
      return { tokenHash: hash, role: this.requestRole(sessionId, peerId, granted, requested, session, claims !== undefined) };
    };
    const relay = relayMode(this.config);
    return { token, admit, createsRelay: relay === 'open' || (relay === 'admin' && claims?.relay === true) };
  }

  /**
   * Reconciles the role a peer asks for with the one its credentials give it. Asking for less (viewer)
   * is always granted. Asking for publisher: in open mode the peer decides; in token mode it may while
   * the session has no other publisher (being first in would have made it one anyway); with a JWT or an
   * invite it may only if they say publisher.
   */
  private requestRole(sessionId: string, peerId: string, granted: Role, requested: Role | undefined, session: AdmitSession | undefined, byClaims: boolean): Role {
    if (requested === undefined || requested === granted || requested === 'viewer') return requested ?? granted;
    const mode = this.config.authMode;
    if (mode === 'open') return requested;
    const invited = session?.managed?.invites !== undefined;
    if (mode === 'token' && !invited && !byClaims) {
      const other = session?.publisher;
      if (other === undefined) return requested;
      throw forbidden(`session ${sessionId} has publisher ${other}; peer ${peerId} may register as a viewer only`);
    }
    throw forbidden(`peer ${peerId} may register in session ${sessionId} as a viewer only: its ${invited ? 'invite' : 'JWT'} does not make it a publisher`);
  }

  /** The role a registration gets, or a refusal. */
  private admit(
    sessionId: string,
    peerId: string,
    bearer: string | undefined,
    session: AdmitSession | undefined,
    current: AdmitPeer | undefined,
    claims: JoinClaims | undefined,
    jwtError: SignalError | undefined,
  ): Role {
    const mode = this.config.authMode;
    const invites = session?.managed?.invites;
    const invite = invites?.get(peerId);
    const firstIn = !session || session.peers.size === 0;
    if (mode === 'open') return current?.auth?.role ?? invite?.role ?? (firstIn ? 'publisher' : 'viewer');

    // The peer's own current token always lets it register again (a reload, a reconnect after a crash).
    if (current?.auth && tokenMatches(bearer, current.auth.tokenHash)) return current.auth.role;
    if (invites) {
      if (!invite) throw forbidden(`peer ${peerId} is not invited to session ${sessionId}`);
      if (tokenMatches(bearer, invite.tokenHash)) return invite.role;
      if (mode === 'token' || !claims) {
        if (bearer === undefined) throw unauthorized(`session ${sessionId} admits invited peers only: send the join token as Authorization: Bearer <token>`);
        if (jwtError && mode === 'jwt' && bearer.split('.').length === 3) throw jwtError;
        throw forbidden(`that is not the join token of peer ${peerId} in session ${sessionId}`);
      }
      return this.claimsRole(sessionId, peerId, claims);
    }
    if (mode === 'token') {
      if (!current) return firstIn ? 'publisher' : 'viewer';
      if (bearer === undefined) {
        throw unauthorized(`peer ${peerId} is registered; taking it over needs its token (Authorization: Bearer <token>) or its registration to expire`);
      }
      throw forbidden(`peer ${peerId} is registered and that is not its token; wait for its registration to expire`);
    }
    // jwt
    if (bearer === undefined) throw unauthorized('registering needs a JWT from your backend: Authorization: Bearer <jwt>');
    if (!claims) throw jwtError ?? unauthorized('the bearer credential is not a valid JWT');
    return this.claimsRole(sessionId, peerId, claims);
  }

  private claimsRole(sessionId: string, peerId: string, claims: JoinClaims): Role {
    if (claims.session !== '*' && claims.session !== sessionId) {
      throw forbidden(`the JWT admits to session ${claims.session}, not ${sessionId}`);
    }
    if (claims.peer !== peerId) throw forbidden(`the JWT admits peer ${claims.peer}, not ${peerId}`);
    return claims.role;
  }

  /**
   * The check before a peer's own stream, messages or leave: the peer must be registered and, outside
   * open mode, `token` must be the one its registration returned. `token` comes from
   * `Authorization: Bearer` or, where a client cannot set headers (EventSource, WebSocket), `?token=`.
   */
  authorizePeer(sessionId: string, peerId: string, token: string | undefined): Awaitable<void> {
    const auth = this.deps.directory.peerAuth(sessionId, peerId);
    if (this.config.authMode === 'open') return after(auth, noop);
    return after(auth, (a) => this.checkPeer(sessionId, peerId, token, a));
  }

  /**
   * The check of `authorizePeer` without its lookup, for `POST /message`: the store that holds the
   * sender runs it inside `send` (in a cluster, in the send script, from the token's hash).
   */
  sender(sessionId: string, peerId: string, token: string | undefined): SenderCredential {
    const checked = this.config.authMode !== 'open';
    return {
      checked,
      hash: token === undefined ? undefined : tokenHash(token),
      check: (auth) => {
        if (checked) this.checkPeer(sessionId, peerId, token, auth);
      },
      refusal: (why) => this.peerRefusal(sessionId, peerId, why),
    };
  }

  private checkPeer(sessionId: string, peerId: string, token: string | undefined, auth: PeerAuth | undefined): void {
    if (token === undefined) throw this.peerRefusal(sessionId, peerId, 'unauthorized');
    if (!tokenMatches(token, auth?.tokenHash)) throw this.peerRefusal(sessionId, peerId, 'forbidden');
  }

  private peerRefusal(sessionId: string, peerId: string, why: 'unauthorized' | 'forbidden'): SignalError {
    return why === 'unauthorized'
      ? unauthorized(`peer ${peerId} needs the token POST /register returned: Authorization: Bearer <token> (or ?token= on GET /events)`)
      : forbidden(`that is not the token of peer ${peerId} in session ${sessionId}`);
  }

  /**
   * `DELETE /register`: the peer itself, or the admin. In open mode anyone, except with a token that
   * belongs to an earlier registration of the id: a page's leave arriving after its reload registered
   * again must not remove the new registration.
   */
  authorizeLeave(sessionId: string, peerId: string, token: string | undefined): Awaitable<void> {
    const auth = this.deps.directory.peerAuth(sessionId, peerId);
    if (this.isAdmin(token)) return after(auth, noop);
    if (this.config.authMode !== 'open') return after(auth, (a) => this.checkPeer(sessionId, peerId, token, a));
    return after(auth, (a) => {
      if (token !== undefined && a && !tokenMatches(token, a.tokenHash)) {
        throw new SignalError('superseded', `peer ${peerId} registered again since that token was issued; the newer registration stays`);
      }
    });
  }

  /** `DELETE /session`: anyone in open mode; otherwise the admin or a publisher of that session. */
  authorizeClose(sessionId: string, token: string | undefined): Awaitable<void> {
    const peers = this.deps.directory.sessionAuths(sessionId);
    if (this.config.authMode === 'open' || this.isAdmin(token)) return after(peers, noop);
    return after(peers, (records) => {
      if (token === undefined) throw unauthorized("closing a session needs a publisher's token or the admin token: Authorization: Bearer <token>");
      for (const record of records) {
        if (!tokenMatches(token, record.auth?.tokenHash)) continue;
        if (record.auth?.role === 'publisher') return;
        throw forbidden(`peer ${record.id} is a viewer; only a publisher or the admin may close session ${sessionId}`);
      }
      throw forbidden(`that token is neither the admin token nor a publisher's in session ${sessionId}`);
    });
  }

  /** The admin API: answers 403 `admin_disabled` while ADMIN_TOKEN is unset. */
  authorizeAdmin(token: string | undefined): void {
    if (this.adminHash === undefined) {
      throw new SignalError('admin_disabled', 'the admin API is off: start the server with ADMIN_TOKEN set to enable it');
    }
    if (token === undefined) throw unauthorized('the admin API needs Authorization: Bearer <ADMIN_TOKEN>');
    if (!this.isAdmin(token)) throw forbidden('that is not the admin token');
  }

  private isAdmin(token: string | undefined): boolean {
    return tokenMatches(token, this.adminHash);
  }
}
