import { Type as t } from '@sinclair/typebox';
import { Elysia } from 'elysia';
import type { Guards } from '../auth/guards';
import { bearerToken } from '../auth/tokens';
import { describe, TAGS } from '../docs/describe';
import { JSON_ANSWER_TYPE, type NativeEdge, nativeRoute } from '../ops/native-route';
import type { SignallingBackend } from './backend';
import type { MessageIntake } from './messages';
import {
  BatchResponse,
  MAX_BATCH,
  MESSAGE_QUEUED,
  MESSAGE_SENT,
  PeerParams,
  RegisterQuery,
  RegisterResponse,
  readPeerParams,
  readRegisterQuery,
  SessionParams,
  SignalBatch,
  SignalBody,
} from './model';
import type { Registrations } from './registrations';

/** The relay's hot path: every offer, answer and candidate of every session. */
const MESSAGE_ROUTE = '/message/:sessionId/:peerId';

/**
 * POST /message as Bun's own router serves it on a listener, for what Elysia's chain costs per message
 * (its handler chain, hooks and header merging were a fifth of the server's CPU time per message). The
 * same intake answers it as the Elysia route, with the same edge (request id, CORS, count, log, envelope);
 * the order is the Elysia route's: the address's rate, the body, the path's ids, the body's fields.
 */
export const messageRoutes = (messages: MessageIntake, edge: NativeEdge) => ({
  [MESSAGE_ROUTE]: {
    POST: nativeRoute(edge, MESSAGE_ROUTE, 'POST', async (request, server) => {
      const body = await messages.read(request, server);
      return messages.answer(readPeerParams(request.params), request, server, body);
    }),
  },
});

const REGISTER_ROUTE = '/register/:sessionId/:peerId';
const PEER_LEFT = { message: 'peer left' } as const;
/** The answer of a leave, as text: made once. */
const LEFT = { status: 200, text: JSON.stringify(PEER_LEFT), type: JSON_ANSWER_TYPE };

/**
 * POST and DELETE /register as Bun's own router serves them on a listener, for what Elysia's chain
 * costs (its answer alone, `Response.json` with the headers it merges, was 15 % of a registration's CPU
 * time in a profile). The same registrations answer them as the Elysia routes, with the same edge
 * (request id, CORS, count, log, envelope); the order is the Elysia routes': the path's ids and the
 * query, then the address's rate.
 */
export const registerRoutes = (registrations: Registrations, edge: NativeEdge) => ({
  [REGISTER_ROUTE]: {
    POST: nativeRoute(edge, REGISTER_ROUTE, 'POST', async (request, server) => {
      const answer = await registrations.register(readPeerParams(request.params), readRegisterQuery(request.url), request, server);
      return { status: 200, text: JSON.stringify(answer), type: JSON_ANSWER_TYPE };
    }),
    DELETE: nativeRoute(edge, REGISTER_ROUTE, 'DELETE', async (request) => {
      await registrations.leave(readPeerParams(request.params), request);
      return LEFT;
    }),
  },
});

const Message = <M extends string>(message: M) => t.Object({ message: t.Literal(message) });

export const sessionRoutes = (signalling: SignallingBackend, { access }: Guards, messages: MessageIntake, registrations: Registrations) =>
  new Elysia()
    .post(
      REGISTER_ROUTE,
      // On a listener, Bun's own routes answer this path (see `registerRoutes`): this is `app.handle`'s way
      // to the same registrations, and the route the API's description is made from.
      ({ params, query, request, server }): Promise<RegisterResponse> => registrations.register(params, query, request, server),
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
      REGISTER_ROUTE,
      async ({ params, request }) => {
        await registrations.leave(params, request);
        return PEER_LEFT;
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
      MESSAGE_ROUTE,
      // On a listener, Bun's own routes answer this path (see `messageRoute`): this is `app.handle`'s way
      // to the same intake, and the route the API's description is made from.
      async ({ params, request, server, body, set }) => {
        const { status, text, type } = await messages.answer(params, request, server, body);
        set.headers['content-type'] = type;
        set.status = status;
        return text;
      },
      {
        params: PeerParams,
        // Our reader takes JSON whatever the content type, after the address's rate; the body is checked
        // by the intake (a message, or a batch of them), so that a batch's refusal names the message at
        // fault, as a single body's names its field.
        parse: [({ request, server }) => messages.read(request, server)],
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
