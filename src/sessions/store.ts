import type { Cancel } from '../clock';
import type { RelaySlot } from '../relay/capacity';
import type { SessionMode } from './server-peer';

/** What a peer may do beyond its own stream: a publisher may also close the session. */
export type Role = 'publisher' | 'viewer';

/** A peer's credentials, kept beside its registration; only the token's hash is ever stored. */
export interface PeerAuth {
  readonly tokenHash: string;
  readonly role: Role;
}

export interface PeerRecord {
  readonly id: string;
  /** Removes the peer when it has had no open stream for the peer timeout; unset while connected. */
  expiry: Cancel | undefined;
  /** Set on every registration; open mode checks it nowhere. */
  auth?: PeerAuth;
  /** In a relay session: the peer's place among MAX_RELAY_PEERS, given back when it leaves. */
  relaySlot?: RelaySlot;
  /** The key of the client address that made this registration (`addressKey`), when known. */
  origin?: string;
}

/** A peer id the admin API let into a session before it registered, with its join token's hash. */
export interface Invite {
  readonly role: Role;
  readonly tokenHash: string;
}

/**
 * A session's peers by id, in the order they joined: a Map's ways (get, has, delete, values, size)
 * over one array. A session holds at most MAX_PEERS_PER_SESSION peers and most hold one or two, for
 * which a Map's table was about 220 bytes a session and an array of two is 60: every device of a fleet
 * waits in a session of its own. Iterating while a peer is removed may skip one: nothing removes a peer
 * while it iterates them.
 */
export class PeerTable {
  private readonly records: PeerRecord[] = [];

  get size(): number {
    return this.records.length;
  }

  get(id: string): PeerRecord | undefined {
    for (const record of this.records) if (record.id === id) return record;
    return undefined;
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  /** Adds a peer that is not in the table. */
  add(record: PeerRecord): void {
    this.records.push(record);
  }

  delete(id: string): boolean {
    const at = this.records.findIndex((r) => r.id === id);
    if (at === -1) return false;
    this.records.splice(at, 1);
    return true;
  }

  values(): IterableIterator<PeerRecord> {
    return this.records.values();
  }
}

export interface Session {
  readonly id: string;
  readonly peers: PeerTable;
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
  /** Fixed when the session is created. */
  readonly mode: SessionMode;
  /** The key of the client address whose registration created the session, when known. */
  createdBy?: string;
  /**
   * Set for sessions the admin API created: they outlive their last peer, until closed or empty for
   * `idleMs`; with `invites`, only those peer ids may register.
   */
  managed?: { readonly idleMs: number; readonly invites?: ReadonlyMap<string, Invite>; idle: Cancel | undefined };
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

  create(id: string, createdAt = 0, mode: SessionMode = 'mesh'): Session {
    const session: Session = { id, peers: new PeerTable(), createdAt, mode };
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
