import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Guards } from '../auth/guards';
import { bearerToken } from '../auth/tokens';
import { refusalOf, SignalError, schemaRefusal } from '../errors';
import { parseJsonBody, readTextBody } from '../json-body';
import type { AddressSource } from '../limits/client-ip';
import { JSON_ANSWER_TYPE } from '../ops/native-route';
import type { MessageOutcome, SendGuard, SignallingBackend } from './backend';
import { type BatchResponse, MESSAGE_QUEUED, MESSAGE_SENT, type MessageResult, type PeerParams, SignalBatch, SignalBody } from './model';
import { batchPayloadSources, PAYLOAD_JSON, payloadSource, type WithPayloadJson } from './payload-source';
import { batchRefusal } from './rules';

/** The two answers of a single message, as text: made once, not serialised per message. */
const SENT: MessageAnswer = { status: 200, text: JSON.stringify(MESSAGE_SENT), type: JSON_ANSWER_TYPE };
const QUEUED: MessageAnswer = { status: 202, text: JSON.stringify(MESSAGE_QUEUED), type: JSON_ANSWER_TYPE };

// Compiled once: every POST /message is checked with these.
const checkBody = TypeCompiler.Compile(SignalBody);
const checkBatch = TypeCompiler.Compile(SignalBatch);

/** What POST /message answers: its status, its JSON text and their content type. */
export interface MessageAnswer {
  status: number;
  text: string;
  type: string;
}

/** A POST /message body as read: the JSON value, and the text of each payload as the client wrote it. */
export class MessageBody {
  constructor(
    readonly value: unknown,
    readonly payloads: string | (string | undefined)[] | undefined,
  ) {}
}

/** A single body, or the refusal that names its field at fault (`body.type: …`). */
function readSingle(value: unknown): SignalBody {
  if (!checkBody.Check(value)) throw schemaRefusal(checkBody, value, 'body');
  return value;
}

/** A batch of the right length whose every message is a body, or the refusal of the whole batch (`body.2.type: …`). */
function readBatch(value: unknown[]): SignalBatch {
  const refused = batchRefusal(value.length);
  if (refused) throw refused;
  if (!checkBatch.Check(value)) throw schemaRefusal(checkBatch, value, 'body');
  return value;
}

/** A batch's messages with their payloads' text as sent, where the reader found it. */
function withPayloads(bodies: SignalBatch, texts: string | (string | undefined)[] | undefined): (SignalBody & WithPayloadJson)[] {
  if (!Array.isArray(texts)) return bodies;
  return bodies.map((body, i) => {
    const message: SignalBody & WithPayloadJson = body;
    message[PAYLOAD_JSON] = texts[i];
    return message;
  });
}

/** One message's outcome as a batch answers it: the status and words POST /message would have given it alone. */
function messageResult(outcome: MessageOutcome): MessageResult {
  if (outcome === 'sent') return { status: 200, ...MESSAGE_SENT };
  if (outcome === 'queued') return { status: 202, ...MESSAGE_QUEUED };
  const result: MessageResult = { status: outcome.status, error: outcome.code, message: outcome.message };
  if (outcome.retryAfterS !== undefined) result.retryAfter = outcome.retryAfterS;
  return result;
}

/**
 * POST /message/:sessionId/:peerId, between the request and its answer, whoever serves it (Elysia's
 * router for `app.handle`, Bun's own routes on a listener): `read` takes the body, `answer` sends it.
 * Refusals are thrown as `SignalError`s.
 */
export class MessageIntake {
  constructor(
    private readonly signalling: SignallingBackend,
    private readonly guards: Guards,
  ) {}

  /**
   * The address's rate first, before the body is even read; then the body, as JSON whatever its content
   * type (a seed client posting with plain `fetch` sends text/plain), with its payloads' text found.
   */
  async read(request: Request, server: AddressSource | null | undefined): Promise<MessageBody> {
    const { limits, address } = this.guards;
    limits.message(() => address(request, server));
    const text = await readTextBody(request);
    const value = parseJsonBody(text);
    return new MessageBody(value, Array.isArray(value) ? batchPayloadSources(text) : payloadSource(text));
  }

  /** Sends what `read` took: one message, or a batch answered with one result per message. */
  async answer(params: PeerParams, request: Request, server: AddressSource | null | undefined, body: unknown): Promise<MessageAnswer> {
    if (!(body instanceof MessageBody)) throw new SignalError('invalid_json', 'the body could not be read');
    const { sessionId, peerId } = params;
    const { access, limits, address } = this.guards;
    // The sender's token and rate are checked inside `send`: in a cluster, in the same Redis step as the message.
    const token = bearerToken(request.headers.get('authorization') ?? undefined);
    const guard: SendGuard = { credential: access.sender(sessionId, peerId, token), rate: limits.peerMessageTicket(sessionId, peerId) };
    if (Array.isArray(body.value)) {
      const messages = withPayloads(readBatch(body.value), body.payloads);
      // The address's rate counts every message: the first was counted before the body was read; each
      // further one is counted now, and refused on its own when none is left.
      const before = messages.map((_, i) => (i === 0 ? undefined : refusalOf(() => limits.message(() => address(request, server)))));
      const outcomes = await this.signalling.sendBatch(sessionId, peerId, messages, guard, before);
      const batch: BatchResponse = { results: outcomes.map(messageResult) };
      return { status: 200, text: JSON.stringify(batch), type: JSON_ANSWER_TYPE };
    }
    const message: SignalBody & WithPayloadJson = readSingle(body.value);
    if (typeof body.payloads === 'string') message[PAYLOAD_JSON] = body.payloads;
    return (await this.signalling.send(sessionId, peerId, message, guard)) === 'sent' ? SENT : QUEUED;
  }
}
