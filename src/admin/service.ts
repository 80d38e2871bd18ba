import { tokenHash, type TokenGenerator } from '../auth/tokens';
import type { Config } from '../config';
import { SignalError } from '../errors';
import type { Signalling } from '../sessions/service';
import type { Invite, Session, SessionStore } from '../sessions/store';
import { type CreatedSession, type CreateSessionBody, DEFAULT_IDLE_S, type JoinGrant, type SessionView } from './model';

export type AdminConfig = Pick<Config, 'maxPeersPerSession'>;

export interface AdminDeps {
  store: SessionStore;
  signalling: Signalling;
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
  create(body: CreateSessionBody): CreatedSession {
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
    this.deps.signalling.createSession(sessionId, { idleMs: idleS * 1000, invites });
    return { sessionId, idleS, peers: grants };
  }

  list(): { sessions: SessionView[] } {
    return { sessions: [...this.deps.store.values()].map((s) => this.view(s)) };
  }

  get(sessionId: string): SessionView {
    const session = this.deps.store.get(sessionId);
    if (!session) throw new SignalError('session_not_found', `session ${sessionId} does not exist`);
    return this.view(session);
  }

  private view(session: Session): SessionView {
    const { signalling } = this.deps;
    const view: SessionView = {
      sessionId: session.id,
      createdAt: new Date(session.createdAt).toISOString(),
      managed: session.managed !== undefined,
      peers: [...session.peers.values()].map((p) => ({
        peerId: p.id,
        role: p.auth?.role ?? null,
        streaming: signalling.isStreaming(session.id, p.id),
      })),
    };
    const invites = session.managed?.invites;
    if (invites) {
      view.invited = [...invites].map(([peerId, { role }]) => ({ peerId, role, joined: session.peers.has(peerId) }));
    }
    return view;
  }
}
