import type { Cancel } from '../clock';

export interface PeerRecord {
  readonly id: string;
  /** Removes the peer when it has had no open stream for the peer timeout; unset while connected. */
  expiry: Cancel | undefined;
}

export interface Session {
  readonly id: string;
  readonly peers: Map<string, PeerRecord>;
}

/** Which peers are in which session, in this process. */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  get size(): number {
    return this.sessions.size;
  }

  get(id: string): Session | undefined {
    return this.sessions.get(id);
  }

  create(id: string): Session {
    const session: Session = { id, peers: new Map() };
    this.sessions.set(id, session);
    return session;
  }

  delete(id: string): void {
    this.sessions.delete(id);
  }

  values(): IterableIterator<Session> {
    return this.sessions.values();
  }
}
