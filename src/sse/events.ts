// The events a stream carries, as schemas: the API's documentation shows them. The service writes
// them as JSON text directly, so nothing checks events against these at run time.
import { Type as t } from '@sinclair/typebox';

const SenderId = t.String({ description: 'the registered id of the peer it is about or from, set by the server' });

export const PingEvent = t.Object(
  { type: t.Literal('ping'), time: t.String({ format: 'date-time' }) },
  { description: 'Every PING_INTERVAL_MS on every stream; carries the id of the last event, so it never moves Last-Event-ID.' },
);

export const NewPeerEvent = t.Object(
  { type: t.Literal('new-peer'), senderId: SenderId },
  { description: 'A peer registered in the session, or registered again (negotiate afresh with it).' },
);

export const PeerLeftEvent = t.Object({ type: t.Literal('peer-left'), senderId: SenderId }, { description: 'A peer left the session, or timed out without a stream.' });

export const SessionClosedEvent = t.Object({ type: t.Literal('session-closed') }, { description: 'The session was closed; the stream ends after this event.' });

export const MessageEvent = t.Object(
  {
    type: t.String({ description: 'the type the sender chose: offer, answer, ice-candidate, or its own' }),
    payload: t.Optional(t.Unknown({ description: 'what the sender sent, unchanged (an SDP, a candidate…)' })),
    senderId: SenderId,
  },
  { description: 'A message from another peer (POST /message).' },
);

/** Every event, by the name its schema has in the API's documentation. */
export const STREAM_EVENTS = { PingEvent, NewPeerEvent, PeerLeftEvent, SessionClosedEvent, MessageEvent };
