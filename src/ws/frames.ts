// The WebSocket transport's frames. Server → client: the JSON events of the SSE stream with their event
// id as an `id` field, and acks. Client → server: the body of POST /message with an optional `id`.
import { Type as t } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Delivered, EventMembers } from '../delivery/delivery';
import { type ErrorCode, errorStatus, SignalError, schemaRefusal } from '../errors';
import { MAX_BODY_BYTES } from '../json-body';
import { MESSAGE_QUEUED, MESSAGE_SENT, SignalBody } from '../sessions/model';
import { batchPayloadSources, PAYLOAD_JSON, payloadSource, type WithPayloadJson } from '../sessions/payload-source';
import { batchRefusal } from '../sessions/rules';

/** What a client chooses to correlate a frame with its ack: a number or a short string. */
export const FrameId = t.Union([t.Number(), t.String({ maxLength: 64 })]);
export type FrameId = typeof FrameId.static;

/**
 * A client frame: exactly the body of `POST /message`, plus the optional correlation `id`. The same
 * schema `t.Composite` makes, made from the body's properties: Composite took 0.6 ms of every start.
 */
export const ClientFrame = t.Object({ ...SignalBody.properties, id: t.Optional(FrameId) });
export type ClientFrame = typeof ClientFrame.static;

/** A frame that is a batch: up to MAX_BATCH client frames, each answered with its own ack, in order. */
export class ClientBatch {
  constructor(readonly frames: readonly (ClientFrame & WithPayloadJson)[]) {}
}

// Compiled once: a generated function, several times faster per frame than interpreting the schema.
const checkFrame = TypeCompiler.Compile(ClientFrame);
const checkId = TypeCompiler.Compile(FrameId);

/**
 * An event as a frame: its JSON object with its id as the first field, `{"id":N,` in front of its members,
 * so that the event is neither parsed nor serialised again, and the frame is its one copy.
 */
export const eventFrame = (id: number, members: EventMembers): string => `{"id":${id},${members}`;

/** The ack of a frame, or null when it had none or it could not be read. */
export type AckId = FrameId | null;

const idText = (id: AckId) => (typeof id === 'string' ? JSON.stringify(id) : String(id));

// Most clients send no id or a number: those acks are a concatenation, not a JSON.stringify.
const SENT_TAIL = `,"status":200,"message":${JSON.stringify(MESSAGE_SENT.message)}}`;
const QUEUED_TAIL = `,"status":202,"message":${JSON.stringify(MESSAGE_QUEUED.message)}}`;

/** `{"ack":7,"status":200,"message":"Message sent"}` or the 202 "Message queued" one: what POST /message answers. */
export const ackFrame = (id: AckId, delivered: Delivered): string => `{"ack":${idText(id)}${delivered === 'sent' ? SENT_TAIL : QUEUED_TAIL}`;

/** The HTTP route's error envelope `{error, message}`, with the status it would carry and the frame's `ack`. */
export function errorFrame(id: AckId, error: SignalError): string {
  const frame: Record<string, unknown> = { ack: id, status: error.status, error: error.code, message: error.message };
  if (error.retryAfterS !== undefined) frame.retryAfter = error.retryAfterS;
  return JSON.stringify(frame);
}

/** The answer to a frame the server failed on: a bug, as a 5xx is on HTTP. */
export const internalErrorFrame = (id: AckId): string =>
  JSON.stringify({ ack: id, status: 500, error: 'internal_error', message: 'the server failed on this frame; this is a bug' });

/**
 * A frame the server cannot act on: its ack id (when one could be read) and why. A batch refused whole
 * is answered once for each of its messages, with their ids (`ids`).
 */
export class BadFrame {
  constructor(
    readonly id: AckId,
    readonly error: SignalError,
    readonly ids: readonly AckId[] = [id],
  ) {}
}

const bad = (id: AckId, code: ErrorCode, message: string) => new BadFrame(id, new SignalError(code, message));

/**
 * Reads one client frame: text, at most 64 KiB (as a POST /message body), JSON, and of the body's shape,
 * or an array of 1 to MAX_BATCH such bodies (a batch, refused whole when one of them is malformed, as
 * POST /message refuses it). Returns the frame, the batch, or a `BadFrame` to answer; never throws.
 */
export function parseClientFrame(data: string | Uint8Array): (ClientFrame & WithPayloadJson) | ClientBatch | BadFrame {
  if (typeof data !== 'string') return bad(null, 'invalid_request', 'frames are JSON text; binary frames are not accepted');
  if (data.length > MAX_BODY_BYTES) return bad(null, 'payload_too_large', `the frame is over ${MAX_BODY_BYTES} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch (e) {
    return bad(null, 'invalid_json', `the frame is not valid JSON: ${(e as Error).message}`);
  }
  if (Array.isArray(value)) return readBatch(value, data);
  if (checkFrame.Check(value)) {
    // The payload goes on as the client wrote it, not serialised again (see `payloadSource`).
    const frame: ClientFrame & WithPayloadJson = value;
    frame[PAYLOAD_JSON] = payloadSource(data);
    return frame;
  }
  const id = idOf(value);
  return new BadFrame(id, schemaRefusal(checkFrame, value, 'frame'));
}

/** A batch, or its refusal: answered once (ack null) when its length is wrong, else once per message. */
function readBatch(values: unknown[], data: string): ClientBatch | BadFrame {
  const refused = batchRefusal(values.length);
  if (refused) return new BadFrame(null, refused);
  const ids = values.map(idOf);
  const wrong = values.findIndex((value) => !checkFrame.Check(value));
  if (wrong >= 0) return new BadFrame(null, schemaRefusal(checkFrame, values[wrong], `frame.${wrong}`), ids);
  // Each message's payload goes on as the client wrote it, as a single frame's does.
  const sources = batchPayloadSources(data);
  const frames = values as (ClientFrame & WithPayloadJson)[];
  if (sources)
    frames.forEach((frame, i) => {
      frame[PAYLOAD_JSON] = sources[i];
    });
  return new ClientBatch(frames);
}

/** The id of a frame that is wrong anyway, when it is usable. */
function idOf(value: unknown): AckId {
  const raw = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as { id?: unknown }).id : undefined;
  return raw !== undefined && checkId.Check(raw) ? raw : null;
}

/** Statuses that mean the client sent something malformed, rather than something the session refused. */
export const isMalformed = (error: SignalError) => error.status === errorStatus.invalid_request || error.status === errorStatus.payload_too_large;
