import { Type as t } from '@sinclair/typebox';
import { Id } from '../sessions/model';

export const RoleName = t.Union([t.Literal('publisher'), t.Literal('viewer')]);

/** `POST /sessions`: a session that waits for the peers named here (or for anyone, with no list). */
export const CreateSessionBody = t.Object({
  sessionId: t.Optional(Id),
  peers: t.Optional(t.Array(t.Object({ peerId: Id, role: RoleName }), { maxItems: 1024, description: 'the only peer ids that may register, each with its role' })),
  idleS: t.Optional(t.Integer({ minimum: 1, maximum: 7 * 86_400, description: 'how long the session waits without peers before it ends (default 3600)' })),
});
export type CreateSessionBody = typeof CreateSessionBody.static;

export interface JoinGrant {
  peerId: string;
  role: 'publisher' | 'viewer';
  /** The join token: `Authorization: Bearer <token>` on that peer's POST /register. Returned once. */
  token: string;
}

export interface CreatedSession {
  sessionId: string;
  idleS: number;
  peers: JoinGrant[];
}

export interface PeerView {
  peerId: string;
  role: 'publisher' | 'viewer' | null;
  /** Whether its event stream is open right now. */
  streaming: boolean;
}

export interface SessionView {
  sessionId: string;
  createdAt: string;
  /** Created by the admin API (it outlives its last peer). */
  managed: boolean;
  peers: PeerView[];
  /** With an allow-list: every invited peer id, and whether it is registered now. */
  invited?: { peerId: string; role: 'publisher' | 'viewer'; joined: boolean }[];
}

export const DEFAULT_IDLE_S = 3600;
