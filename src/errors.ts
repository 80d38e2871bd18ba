import { Type as T, type TSchema } from '@sinclair/typebox';
import type { TypeCheck } from '@sinclair/typebox/compiler';

/**
 * Every error the server answers with. The code is what clients branch on; the status follows from
 * it, so the core throws `new SignalError('peer_not_found', …)` without knowing about HTTP.
 */
export const errorStatus = {
  invalid_json: 400,
  invalid_request: 400,
  reserved_type: 400,
  reserved_peer: 400,
  invalid_sdp: 400,
  unauthorized: 401,
  forbidden: 403,
  admin_disabled: 403,
  payload_too_large: 413,
  not_found: 404,
  session_not_found: 404,
  peer_not_found: 404,
  target_not_found: 404,
  resource_not_found: 404,
  method_not_allowed: 405,
  session_full: 409,
  superseded: 409,
  resume_gap: 409,
  session_exists: 409,
  mode_conflict: 409,
  publisher_exists: 409,
  precondition_failed: 412,
  unsupported_media_type: 415,
  upgrade_required: 426,
  precondition_required: 428,
  too_many_sessions: 429,
  queue_full: 429,
  rate_limited: 429,
  too_many_streams: 429,
  too_many_candidates: 429,
  too_many_peers: 429,
  too_many_relay_peers: 429,
  // The one deliberate 5xx: the shared store (Redis) of a cluster cannot be reached, so nothing can be
  // made durable; sent with Retry-After, and never for a request that was acknowledged.
  backend_unavailable: 503,
  // The relay carries as many peers as this process can forward media to (MAX_RELAY_PEERS): the server is
  // full, not broken, and says when to come back.
  relay_full: 503,
} as const;

export type ErrorCode = keyof typeof errorStatus;

/** The one JSON shape of every error answer. */
export interface ErrorBody {
  error: ErrorCode | 'internal_error';
  message: string;
}

/** The same envelope as a schema, for the API's documentation. */
export const ErrorEnvelope = T.Object(
  {
    error: T.String({ enum: [...Object.keys(errorStatus), 'internal_error'], description: 'what clients branch on' }),
    message: T.String({ description: 'what went wrong, for a person' }),
  },
  {
    description:
      'Every error: a 4xx status with this body (503 only for backend_unavailable, the cluster store cannot be reached, and relay_full, the relay carries MAX_RELAY_PEERS)',
  },
);

export class SignalError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Seconds a client should wait before trying again (sent as `Retry-After`). */
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.name = 'SignalError';
    this.status = errorStatus[code];
  }

  toResponse(): Response {
    return errorResponse(this.status, { error: this.code, message: this.message }, this.retryAfterS);
  }
}

/** The answer to a failure of the server itself (a bug): the one 5xx that is not a refusal. */
export const internalErrorResponse = (): Response => errorResponse(500, { error: 'internal_error', message: 'the server failed; this is a bug' });

export function errorResponse(status: number, body: ErrorBody, retryAfterS?: number): Response {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (retryAfterS !== undefined) headers['retry-after'] = String(retryAfterS);
  // RFC 6750: a 401 names the scheme the client should authenticate with.
  if (status === 401) headers['www-authenticate'] = 'Bearer realm="switchboard"';
  return new Response(JSON.stringify(body), { status, headers });
}

/**
 * The refusals of the session rules, by name: each has one code and one message, whichever store
 * (one process or the cluster) refuses, so that a client reads the same answer from both. `where`
 * names what holds a limit: this server, or the cluster it belongs to.
 */
export const refusals = {
  sessionNotFound: (sessionId: string) => new SignalError('session_not_found', `session ${sessionId} does not exist`),
  peerNotFound: (sessionId: string, peerId: string) => new SignalError('peer_not_found', `peer ${peerId} is not registered in session ${sessionId}`),
  targetNotFound: (sessionId: string, target: string) => new SignalError('target_not_found', `peer ${target} is not in session ${sessionId}`),
  targetIsSender: () => new SignalError('invalid_request', 'target is the sender itself'),
  reservedType: (type: string) => new SignalError('reserved_type', `type "${type}" is sent by the server only`),
  /** `peerId` is the server's own id in relay sessions (SERVER_PEER_ID). */
  reservedPeer: (peerId: string) => new SignalError('reserved_peer', `peer id "${peerId}" is the server's own, in every session`),
  sessionExists: (sessionId: string) => new SignalError('session_exists', `session ${sessionId} already exists`),
  tooManySessions: (max: number, where: Where) => new SignalError('too_many_sessions', `this ${where} holds its limit of ${max} sessions`, 5),
  sessionFull: (sessionId: string, max: number) => new SignalError('session_full', `session ${sessionId} already has ${max} peers`),
  /** The client address that registers has created `cap` sessions still open (MAX_SESSIONS_PER_IP). */
  ownSessions: (cap: number) =>
    new SignalError('too_many_sessions', `this address has created ${cap} sessions that are still open, the most allowed; end one (DELETE /session) or wait for one to end`, 5),
  /** The client address that registers has `cap` registrations alive (MAX_PEERS_PER_IP). */
  ownPeers: (cap: number) =>
    new SignalError('too_many_peers', `this address has ${cap} registrations alive, the most allowed; leave with one (DELETE /register) or wait for one to time out`, 5),
  modeConflict: (sessionId: string, mode: string, asked: string) =>
    new SignalError('mode_conflict', `session ${sessionId} is a ${mode} session; it cannot be joined with mode=${asked}`),
  publisherExists: (sessionId: string, publisher: string) =>
    new SignalError('publisher_exists', `relay session ${sessionId} already has publisher ${publisher}; a relay session has one`),
  relayOff: () => new SignalError('invalid_request', 'this server does not relay media: relay sessions are off (RELAY_MODE=off)'),
  relayNotCreatable: () =>
    new SignalError('forbidden', 'relay sessions are created by the admin API (POST /sessions with mode relay) or with a JWT whose "relay" claim is true here (RELAY_MODE=admin)'),
  /** In a relay session, media signals go to the server peer (`serverPeerId`) only. */
  mediaToServerOnly: (sessionId: string, type: string, serverPeerId: string) =>
    new SignalError('invalid_request', `in relay session ${sessionId}, ${type} messages go to target "${serverPeerId}" only: media flows through the server`),
  superseded: () => new SignalError('superseded', 'this peer id registered again since that stream; register to join anew'),
  resumeGap: (lastEventId: number) => new SignalError('resume_gap', `cannot resume after event ${lastEventId}: it is no longer kept; register again`),
  /** The target has `held` undelivered events, its cap. */
  queueHeld: (held: number) => new SignalError('queue_full', `the target has ${held} undelivered events; retry when it reads them`, 1),
  /** The target's undelivered events weigh `bytes`: one more would pass its budget. */
  queueBytes: (bytes: number) =>
    new SignalError('queue_full', `the target has ${bytes} bytes of undelivered events, and this message would pass its limit; retry when it reads them`, 1),
  /** One of a broadcast's targets has no room (its count or its bytes): the broadcast reaches no one. */
  queueBroadcast: (peerId: string) => new SignalError('queue_full', `peer ${peerId} has too many undelivered events; retry when it reads them`, 1),
  /** Every peer's undelivered events weigh `bytes`: one more would pass the budget of `max`. */
  queueTotal: (bytes: number, max: number, where: Where) =>
    new SignalError('queue_full', `this ${where} holds ${bytes} bytes of undelivered events, near its limit of ${max}; retry when they are read`, 1),
  /** A batch (`POST /message` with an array, or a WebSocket frame) without a message. */
  emptyBatch: () => new SignalError('invalid_request', 'the batch is empty; send 1 or more messages'),
  /** A batch of `size` messages, more than `max`. */
  batchTooLong: (size: number, max: number) => new SignalError('invalid_request', `the batch has ${size} messages; at most ${max} go in one`),
  /** A registration kept finding the session changed between its check and its write (cluster). */
  busySession: (sessionId: string) => new SignalError('backend_unavailable', `session ${sessionId} changes too fast to join; retry`, 1),
};

/**
 * The refusal of a value that `check` does not accept, naming the first field at fault from `root`:
 * `body.type: Expected string`, `frame.1.target: …`. For values that are wrong anyway: it walks them
 * once, so that a deeply nested one costs what reading it did.
 */
export function schemaRefusal(check: TypeCheck<TSchema>, value: unknown, root: string): SignalError {
  const first = check.Errors(value).First();
  const field = first?.path ? `${root}${first.path.replaceAll('/', '.')}` : root;
  return new SignalError('invalid_request', `${field}: ${ownError(first?.schema) ?? first?.message ?? 'Expected an object'}`);
}

/** What a schema says itself of a value it refuses (its `error` option), where it says something. */
export function ownError(schema: unknown): string | undefined {
  const error = (schema as { error?: unknown } | undefined)?.error;
  return typeof error === 'string' ? error : undefined;
}

/** The refusal that `check` throws, or undefined when it lets through; anything else it throws is rethrown. */
export function refusalOf(check: () => void): SignalError | undefined {
  try {
    check();
    return undefined;
  } catch (e) {
    if (e instanceof SignalError) return e;
    throw e;
  }
}

/** What holds a limit: one process, or the cluster of instances sharing one Redis. */
export type Where = 'server' | 'cluster';
