import { type TokenGenerator, tokenHash } from '../auth/tokens';
import type { Config } from '../config';
import { SignalError } from '../errors';
import { type Awaitable, after, type SessionSnapshot, type SignallingBackend } from '../sessions/backend';
import type { Invite } from '../sessions/store';
import { type CreatedSession, type CreateSessionBody, DEFAULT_IDLE_S, type JoinGrant, type SessionView } from './model';

export type AdminConfig = Pick<Config, 'maxPeersPerSession'>;

export interface AdminDeps {
  signalling: SignallingBackend;
  newToken: TokenGenerator;
  newId: () => string;
}

/** The server-to-server view of sessions: creating them ahead of their peers, and looking at them. */
export class Admin {
  constructor(
    private readonly config: AdminConfig,
    private readonly deps: AdminDeps,
  ) {}

  /** Creates a session, with a join token for each listed peer (returned here only, kept as hashes). */
  create(body: CreateSessionBody): Awaitable<CreatedSession> {
    const sessionId = body.sessionId ?? this.deps.newId();
    const idleS = body.idleS ?? DEFAULT_IDLE_S;
    const listed = body.peers;
    let invites: Map<string, Invite> | undefined;
    const grants: JoinGrant[] = [];
    if (listed) {
      if (listed.length > this.config.maxPeersPerSession) {
        throw new SignalError('invalid_request', `body.peers lists ${listed.length} peers; a session holds at most ${this.config.maxPeersPerSession}`);
      }
      invites = new Map();
      for (const { peerId, role } of listed) {
        if (invites.has(peerId)) throw new SignalError('invalid_request', `body.peers lists ${peerId} twice`);
        const token = this.deps.newToken();
        invites.set(peerId, { role, tokenHash: tokenHash(token) });
        grants.push({ peerId, role, token });
      }
    }
    return after(this.deps.signalling.createSession(sessionId, { idleMs: idleS * 1000, invites, mode: body.mode }), ({ mode }) => ({ sessionId, idleS, mode, peers: grants }));
  }

  list(): Awaitable<{ sessions: SessionView[] }> {
    return after(this.deps.signalling.snapshots(), (all) => ({ sessions: all.map(view) }));
  }

  get(sessionId: string): Awaitable<SessionView> {
    return after(this.deps.signalling.snapshot(sessionId), (snapshot) => {
      if (!snapshot) throw new SignalError('session_not_found', `session ${sessionId} does not exist`);
      return view(snapshot);
    });
  }
}

function view(session: SessionSnapshot): SessionView {
  const result: SessionView = {
    sessionId: session.id,
    createdAt: new Date(session.createdAt).toISOString(),
    managed: session.managed,
    mode: session.mode,
    peers: session.peers.map((p) => ({ peerId: p.id, role: p.role, streaming: p.streaming })),
  };
  if (session.invites) {
    const joined = new Set(session.peers.map((p) => p.id));
    result.invited = session.invites.map(({ peerId, role }) => ({ peerId, role, joined: joined.has(peerId) }));
  }
  return result;
}
