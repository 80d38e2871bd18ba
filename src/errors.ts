import { Type as T } from '@sinclair/typebox';

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
  { description: 'Every error: a 4xx status with this body (503 only for backend_unavailable, the cluster store cannot be reached, and relay_full, the relay carries MAX_RELAY_PEERS)' },
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

export function errorResponse(status: number, body: ErrorBody, retryAfterS?: number): Response {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (retryAfterS !== undefined) headers['retry-after'] = String(retryAfterS);
  // RFC 6750: a 401 names the scheme the client should authenticate with.
  if (status === 401) headers['www-authenticate'] = 'Bearer realm="switchboard"';
  return new Response(JSON.stringify(body), { status, headers });
}
