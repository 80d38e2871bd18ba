import { Type as t } from '@sinclair/typebox';
import { Id, SessionModeName } from '../sessions/model';

export const RoleName = t.Union([t.Literal('publisher'), t.Literal('viewer')]);
export type RoleName = typeof RoleName.static;

/** `POST /sessions`: a session that waits for the peers named here (or for anyone, with no list). */
export const CreateSessionBody = t.Object({
  sessionId: t.Optional(Id),
  peers: t.Optional(t.Array(t.Object({ peerId: Id, role: RoleName }), { maxItems: 1024, description: 'the only peer ids that may register, each with its role' })),
  idleS: t.Optional(t.Integer({ minimum: 1, maximum: 7 * 86_400, description: 'how long the session waits without peers before it ends (default 3600)' })),
  mode: t.Optional(SessionModeName),
});
export type CreateSessionBody = typeof CreateSessionBody.static;

export const JoinGrant = t.Object({
  peerId: t.String(),
  role: RoleName,
  token: t.String({ description: "the join token: Authorization: Bearer <token> on that peer's POST /register. Returned once." }),
});
export type JoinGrant = typeof JoinGrant.static;

export const CreatedSession = t.Object({
  sessionId: t.String(),
  idleS: t.Integer(),
  mode: SessionModeName,
  peers: t.Array(JoinGrant),
});
export type CreatedSession = typeof CreatedSession.static;

export const PeerView = t.Object({
  peerId: t.String(),
  role: t.Union([RoleName, t.Null()]),
  streaming: t.Boolean({ description: 'whether its event stream is open right now' }),
});
export type PeerView = typeof PeerView.static;

export const SessionView = t.Object({
  sessionId: t.String(),
  createdAt: t.String({ format: 'date-time' }),
  managed: t.Boolean({ description: 'created by the admin API (it outlives its last peer)' }),
  mode: SessionModeName,
  peers: t.Array(PeerView),
  invited: t.Optional(
    t.Array(t.Object({ peerId: t.String(), role: RoleName, joined: t.Boolean() }), { description: 'with an allow-list: every invited peer id, and whether it is registered now' }),
  ),
});
export type SessionView = typeof SessionView.static;

export const SessionList = t.Object({ sessions: t.Array(SessionView) });
export type SessionList = typeof SessionList.static;

export const DEFAULT_IDLE_S = 3600;
