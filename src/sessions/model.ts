// Plain TypeBox: the service shares these types, and nothing below the routes depends on Elysia.
import { Type as t } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { schemaRefusal } from '../errors';
import { IceServerResponse } from '../ice/ice-servers';

/** Ids of sessions and peers: safe in a URL path, a log line and an SSE frame. */
export const ID_PATTERN = '^[A-Za-z0-9._:@|~-]{1,128}$';

export const Id = t.String({ pattern: ID_PATTERN, description: '1 to 128 of A-Z a-z 0-9 . _ : @ | ~ -' });

export const PeerParams = t.Object({ sessionId: Id, peerId: Id });
export type PeerParams = typeof PeerParams.static;

const checkPeerParams = TypeCompiler.Compile(PeerParams);

/** A request's path ids, for a route outside Elysia's validation, or the refusal that names the one at fault (`params.peerId: …`). */
export function readPeerParams(params: unknown): PeerParams {
  if (!checkPeerParams.Check(params)) throw schemaRefusal(checkPeerParams, params, 'params');
  return params;
}

export const SessionParams = t.Object({ sessionId: Id });
export type SessionParams = typeof SessionParams.static;

// `error`: what a refusal says of a value that is none of these (Elysia reads it too), instead of the
// validator's own "Expected union value".
const modeName = (description: string) => t.Union([t.Literal('mesh'), t.Literal('relay')], { description, error: 'must be mesh or relay' });

export const SessionModeName = modeName('mesh: media goes peer to peer; relay: the publisher sends one copy to the server, which forwards it to every viewer');

/** `POST /register` options. */
export const RegisterQuery = t.Object({
  mode: t.Optional(modeName("the new session's mode (default mesh); for an existing session, must be its mode")),
  role: t.Optional(t.Union([t.Literal('publish'), t.Literal('view')], { description: 'the role asked for, within what the access mode allows', error: 'must be publish or view' })),
  offer: t.Optional(
    t.Literal('inline', {
      description:
        "relay sessions: the server's offer in this answer (`offer`) when it can be made at once, instead of as the stream's first event: a round trip less to the first frame",
      error: 'must be inline',
    }),
  ),
});
export type RegisterQuery = typeof RegisterQuery.static;

const checkRegisterQuery = TypeCompiler.Compile(RegisterQuery);

/** A URL's query for a route outside Elysia's validation, read as Elysia reads one: a name given twice takes its last value. */
export function queryValues(url: string): Record<string, string> {
  const at = url.indexOf('?');
  return at === -1 ? {} : Object.fromEntries(new URLSearchParams(url.slice(at + 1)));
}

/**
 * The query of a `POST /register` URL, for a route outside Elysia's validation (names it does not
 * know are ignored), or the refusal that names the field at fault (`query.mode: …`).
 */
export function readRegisterQuery(url: string): RegisterQuery {
  const { mode, role, offer } = queryValues(url);
  const query: Record<string, string> = {};
  if (mode !== undefined) query.mode = mode;
  if (role !== undefined) query.role = role;
  if (offer !== undefined) query.offer = offer;
  if (!checkRegisterQuery.Check(query)) throw schemaRefusal(checkRegisterQuery, query, 'query');
  return query;
}

/** Event types the server itself sends; a client may not send them. */
export const SERVER_EVENT_TYPES: ReadonlySet<string> = new Set(['ping', 'new-peer', 'peer-left', 'session-closed']);

/** The body of `POST /message`, exactly the seed's `{type, payload, target}`. */
export const SignalBody = t.Object({
  type: t.String({ minLength: 1, maxLength: 64, description: 'offer, answer, ice-candidate, or any type of your own' }),
  payload: t.Optional(t.Unknown()),
  target: t.Optional(Id),
});
export type SignalBody = typeof SignalBody.static;

/** The most messages one `POST /message` body (or one WebSocket frame) may carry as an array. */
export const MAX_BATCH = 32;

/** A batch: up to MAX_BATCH message bodies, sent in this order, each answered on its own. */
export const SignalBatch = t.Array(SignalBody, {
  minItems: 1,
  maxItems: MAX_BATCH,
  description: `1 to ${MAX_BATCH} messages, each exactly a single body; delivered in this order, each answered on its own`,
});
export type SignalBatch = typeof SignalBatch.static;

/** What one message of a batch became: the status and words that it would have had alone. */
export const MessageResult = t.Object({
  status: t.Integer({ description: 'what POST /message would have answered this message alone: 200, 202, or a 4xx' }),
  message: t.String(),
  error: t.Optional(t.String({ description: 'the error code, on a refusal (as in the error envelope)' })),
  retryAfter: t.Optional(t.Integer({ description: 'seconds to wait before sending this message again (429)' })),
});
export type MessageResult = typeof MessageResult.static;

/** The answer to a batch: one result per message, in the batch's order. */
export const BatchResponse = t.Object({ results: t.Array(MessageResult) });
export type BatchResponse = typeof BatchResponse.static;

export const RegisterResponse = t.Object({
  message: t.Literal('session registered successfully'),
  sessionId: t.String(),
  peerId: t.String(),
  peers: t.Array(t.String(), { description: 'the other peers of the session' }),
  token: t.String({ description: "this peer's token: Authorization: Bearer <token> on its other requests (?token= on GET /events)" }),
  role: t.Optional(t.Union([t.Literal('publisher'), t.Literal('viewer')], { description: 'a publisher may also close the session' })),
  lastEventId: t.Integer({ description: 'the Last-Event-ID to open the first stream with (?lastEventId=): a first stream lost before its first event then loses nothing' }),
  mode: SessionModeName,
  offer: t.Optional(
    t.Object(
      { type: t.Literal('offer'), sdp: t.String() },
      {
        description:
          "with ?offer=inline in a relay session: the server's offer to this peer, to be answered (`answer` to switchboard) as if it had come over the stream, where it then does not come; absent when it could not be made at once (it then comes over the stream)",
      },
    ),
  ),
  iceServers: t.Optional({
    ...IceServerResponse,
    description:
      "the STUN and TURN servers for this peer, as GET /iceServers answers it with this token: a client may make its connections with them and skip that request (absent only where Cloudflare's TURN service must be asked first: before its first credential, or for one due for renewal)",
  }),
});
export type RegisterResponse = typeof RegisterResponse.static;

export const MESSAGE_SENT = { message: 'Message sent' } as const;
export const MESSAGE_QUEUED = { message: 'Message queued' } as const;
