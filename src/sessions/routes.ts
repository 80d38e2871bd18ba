import { Type as t } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Elysia } from 'elysia';
import type { Guards } from '../auth/guards';
import { bearerToken } from '../auth/tokens';
import { describe, TAGS } from '../docs/describe';
import { refusalOf, schemaRefusal } from '../errors';
import { parseJsonBody, readTextBody } from '../json-body';
import type { MessageOutcome, SendGuard, SignallingBackend } from './backend';
import {
  BatchResponse,
  MAX_BATCH,
  MESSAGE_QUEUED,
  MESSAGE_SENT,
  type MessageResult,
  PeerParams,
  RegisterQuery,
  RegisterResponse,
  SessionParams,
  SignalBatch,
  SignalBody,
} from './model';
import { batchPayloadSources, PAYLOAD_JSON, payloadSource, type WithPayloadJson } from './payload-source';
import { batchRefusal } from './rules';

/** The two answers of POST /message, as text, with the content type `Response.json` gives. */
const SENT_TEXT = JSON.stringify(MESSAGE_SENT);
const QUEUED_TEXT = JSON.stringify(MESSAGE_QUEUED);
const JSON_TYPE = 'application/json;charset=utf-8';

/**
 * The payload text of each message request being handled (of each message of a batch), from its parser
 * to its handler; gone with the request.
 */
const payloadTexts = new WeakMap<Request, string | (string | undefined)[]>();

// Compiled once: the body of every POST /message is checked with one of these.
const checkBody = TypeCompiler.Compile(SignalBody);
const checkBatch = TypeCompiler.Compile(SignalBatch);

/** A single body, or the refusal that names its field at fault (`body.type: …`). */
function readBody(value: unknown): SignalBody {
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

/** A batch's messages with their payloads' text as sent, where the parser found it. */
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
 * A batch: the address's rate counts every message (the first was counted before the body was read;
 * each further one is counted now, and refused on its own when none is left), then the store sends
 * them in order.
 */
async function sendBatch(
  signalling: SignallingBackend,
  sessionId: string,
  peerId: string,
  bodies: readonly (SignalBody & WithPayloadJson)[],
  guard: SendGuard,
  rateOf: (addressOf: () => string | undefined) => void,
  addressOf: () => string | undefined,
): Promise<BatchResponse> {
  const before = bodies.map((_, i) => (i === 0 ? undefined : refusalOf(() => rateOf(addressOf))));
  const outcomes = await signalling.sendBatch(sessionId, peerId, bodies, guard, before);
  return { results: outcomes.map(messageResult) };
}

const Message = <M extends string>(message: M) => t.Object({ message: t.Literal(message) });

export const sessionRoutes = (signalling: SignallingBackend, { access, limits, address }: Guards) =>
  new Elysia()
    .post(
      '/register/:sessionId/:peerId',
      async ({ params: { sessionId, peerId }, query: { mode, role }, headers: { authorization }, request, server }): Promise<RegisterResponse> => {
        const client = address(request, server);
        limits.register(() => client);
        const requested = role === undefined ? undefined : role === 'publish' ? 'publisher' : 'viewer';
        const ticket = await access.ticket(sessionId, peerId, bearerToken(authorization), requested);
        const origin = { address: client, createsRelay: ticket.createsRelay };
        const { peers, auth, lastEventId, mode: sessionMode } = await signalling.register(sessionId, peerId, ticket.admit, mode, origin);
        return { message: 'session registered successfully', sessionId, peerId, peers, token: ticket.token, role: auth?.role, lastEventId, mode: sessionMode };
      },
      {
        params: PeerParams,
        query: RegisterQuery,
        detail: describe({
          summary: 'Register a peer',
          description:
            'Creates the session if it is new (in `mode`, mesh by default), else joins it; registering an id again takes it over. ' +
            'The other peers get new-peer (in a relay session, only viewers hear of the publisher).',
          tags: [TAGS.signalling],
          answers: { 200: { description: 'registered; `peers` lists the others', schema: RegisterResponse } },
          errors: [
            'invalid_request',
            'reserved_peer',
            'unauthorized',
            'forbidden',
            'session_full',
            'mode_conflict',
            'publisher_exists',
            'too_many_sessions',
            'too_many_peers',
            'rate_limited',
            'too_many_relay_peers',
            'relay_full',
            'backend_unavailable',
          ],
        }),
      },
    )
    .delete(
      '/register/:sessionId/:peerId',
      async ({ params: { sessionId, peerId }, headers: { authorization } }) => {
        await access.authorizeLeave(sessionId, peerId, bearerToken(authorization));
        await signalling.leave(sessionId, peerId);
        return { message: 'peer left' };
      },
      {
        params: PeerParams,
        detail: describe({
          summary: 'Leave a session',
          description: 'The others get peer-left, the stream ends; the last peer out ends the session.',
          tags: [TAGS.signalling],
          answers: { 200: { description: 'left', schema: Message('peer left') } },
          errors: ['invalid_request', 'session_not_found', 'peer_not_found', 'backend_unavailable'],
        }),
      },
    )
    .post(
      '/message/:sessionId/:peerId',
      // The one header it needs is read from the request: naming `headers` would copy them all.
      async ({ params: { sessionId, peerId }, request, server, body, set }) => {
        // The sender's token and rate are checked inside `send`: in a cluster, in the same Redis step as the message.
        const token = bearerToken(request.headers.get('authorization') ?? undefined);
        const guard = { credential: access.sender(sessionId, peerId, token), rate: limits.peerMessageTicket(sessionId, peerId) };
        if (Array.isArray(body))
          return sendBatch(
            signalling,
            sessionId,
            peerId,
            withPayloads(readBatch(body), payloadTexts.get(request)),
            guard,
            (of) => limits.message(of),
            () => address(request, server),
          );
        // The payload's text, found while parsing, goes on the checked body.
        const message: SignalBody & WithPayloadJson = readBody(body);
        const text = payloadTexts.get(request);
        if (typeof text === 'string') message[PAYLOAD_JSON] = text;
        const delivered = await signalling.send(sessionId, peerId, message, guard);
        // The answer's text is made once: Elysia sends a string as it is, where an object is serialised per message.
        set.headers['content-type'] = JSON_TYPE;
        if (delivered === 'sent') return SENT_TEXT;
        set.status = 202;
        return QUEUED_TEXT;
      },
      {
        params: PeerParams,
        // The address limit comes first, before the body is even read. Our reader takes JSON whatever the
        // content type; the body is checked by the handler (a message, or a batch of them), so that a
        // batch's refusal names the message at fault, as a single body's names its field.
        parse: [
          async ({ request, server }) => {
            limits.message(() => address(request, server));
            const text = await readTextBody(request);
            const value = parseJsonBody(text);
            const payload = Array.isArray(value) ? batchPayloadSources(text) : payloadSource(text);
            if (payload !== undefined) payloadTexts.set(request, payload);
            return value;
          },
        ],
        detail: describe({
          summary: 'Send a message to a peer, or a batch of messages',
          description:
            'Forwards `{type, payload}` to `target`, or to every other peer when there is none, as `{type, payload, senderId}`. Any content type; at most 64 KiB. ' +
            `A JSON array of 1 to ${MAX_BATCH} such bodies is a batch: delivered in its order, each message checked and counted (rates, queues) as if sent alone, ` +
            'and answered 200 with one result per message, in order; a refusal of the sender (401, 403, 404) or of the batch itself (400, 413, 429 of the address) refuses it whole.',
          tags: [TAGS.signalling],
          body: { schema: t.Union([SignalBody, SignalBatch]), contentTypes: ['application/json', 'text/plain'] },
          answers: {
            200: {
              description: "a single body: written to the target's open stream; a batch: what became of each message",
              schema: t.Union([Message(MESSAGE_SENT.message), BatchResponse]),
            },
            202: { description: 'held for the target, which is registered but not reading now', schema: Message(MESSAGE_QUEUED.message) },
          },
          errors: [
            'invalid_json',
            'invalid_request',
            'reserved_type',
            'payload_too_large',
            'session_not_found',
            'peer_not_found',
            'target_not_found',
            'queue_full',
            'too_many_candidates',
            'unauthorized',
            'forbidden',
            'rate_limited',
            'backend_unavailable',
          ],
        }),
      },
    )
    .delete(
      '/session/:sessionId',
      async ({ params: { sessionId }, headers: { authorization } }) => {
        await access.authorizeClose(sessionId, bearerToken(authorization));
        await signalling.closeSession(sessionId);
        return { message: 'session closed' };
      },
      {
        params: SessionParams,
        detail: describe({
          summary: 'Close a session',
          description: 'Every peer gets session-closed, then every stream of the session ends.',
          tags: [TAGS.signalling],
          answers: { 200: { description: 'closed', schema: Message('session closed') } },
          errors: ['invalid_request', 'session_not_found', 'backend_unavailable'],
        }),
      },
    );
