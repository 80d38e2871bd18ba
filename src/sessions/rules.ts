import type { Config } from '../config';
import { type EventMembers, eventMembers } from '../delivery/delivery';
import { eventSize } from '../delivery/rules';
import { type ErrorCode, refusals, type SignalError, type Where } from '../errors';
import type { HoldingsConfig } from '../limits/address-holdings';
import type { RateTicket } from './backend';
import { MAX_BATCH, SERVER_EVENT_TYPES, type SignalBody } from './model';
import { PAYLOAD_JSON, type WithPayloadJson } from './payload-source';
import { SERVER_PEER_ID, type SessionMode } from './server-peer';
import type { Role } from './store';

/**
 * The session rules that both stores apply: the one-process store (`LocalSignalling`) calls these
 * functions; the cluster's (`ClusterSignalling`) calls them in TypeScript and hands their results to
 * its Lua scripts as arguments (the events, the limits), or builds the scripts' checks from the
 * definitions here (`ADMISSION_CAPS`). Nothing here knows where a session is kept.
 */

/** The server's events about the session, as every peer reads them. */
export const serverEvents = {
  /** `peerId` joined (or took its id over). */
  newPeer: (peerId: string): EventMembers => eventMembers(JSON.stringify({ type: 'new-peer', senderId: peerId })),
  /** `peerId` left or timed out. */
  peerLeft: (peerId: string): EventMembers => eventMembers(JSON.stringify({ type: 'peer-left', senderId: peerId })),
  /** The session was closed: the last event of every stream. */
  sessionClosed: eventMembers(JSON.stringify({ type: 'session-closed' })),
};

/** A client's message as its receivers read it, with its `eventSize`. */
export interface ClientEvent {
  readonly members: EventMembers;
  readonly size: number;
}

/** What a client event's text weighs besides its type, payload and sender: `{"type":…,"payload":…,"senderId":…}`. */
const CLIENT_EVENT_FIELDS = eventSize('"type":,"payload":,"senderId":}');
const utf8Bytes = (text: string) => Buffer.byteLength(text);

/**
 * A client message as its receivers read it: the server, never the client, sets `senderId`. The payload's
 * text as the client sent it is used when the message carries it (see `payloadSource`), rather than the
 * parsed value serialised again; the two are the same JSON value. That event is put together from its
 * parts and counted by them, so that it is never joined before the frame that carries it is.
 */
export function clientEvent(senderId: string, body: Pick<SignalBody, 'type' | 'payload'> & WithPayloadJson): ClientEvent {
  const payload = body[PAYLOAD_JSON];
  if (payload === undefined) {
    const members = eventMembers(JSON.stringify({ type: body.type, payload: body.payload, senderId }));
    return { members, size: eventSize(members) };
  }
  const type = JSON.stringify(body.type);
  const sender = JSON.stringify(senderId);
  return {
    members: `"type":${type},"payload":${payload},"senderId":${sender}}`,
    size: CLIENT_EVENT_FIELDS + utf8Bytes(type) + utf8Bytes(payload) + utf8Bytes(sender),
  };
}

/** What the relay's server peer sends a peer of a relay session. */
export const serverPeerEvent = (type: string, payload: unknown): EventMembers => eventMembers(JSON.stringify({ type, payload, senderId: SERVER_PEER_ID }));

/** A peer as the visibility rule sees it. */
export interface Visible {
  readonly id: string;
  readonly role: Role;
}

/**
 * Whether `viewer` is told of `peer` (new-peer, peer-left) and lists it among the peers of its session.
 * In a mesh session everyone sees everyone; in a relay session only the publisher is seen, by the
 * others: its arrival and departure are what they need to know, and nobody learns of a viewer, so that
 * nobody offers to anyone but the server.
 */
export const sees = (mode: SessionMode, viewer: Visible, peer: Visible): boolean => mode === 'mesh' || (peer.role === 'publisher' && viewer.id !== peer.id);

/**
 * `sees` as a Lua function for the cluster's scripts, which never ask it of a peer about itself:
 * `seenByOthers(relay, publisher)`, whether the other peers of a session (relay or not) are told of a
 * peer (a publisher or not) and list it.
 */
export const SEES_LUA = 'local function seenByOthers(relay, publisher) return not relay or publisher end';

/** Refuses the server peer's own id, as a registration's or as an invite's. */
export function checkPeerId(peerId: string): void {
  if (peerId === SERVER_PEER_ID) throw refusals.reservedPeer(SERVER_PEER_ID);
}

/** What peers of a relay session send to `switchboard` only: between them, refused. */
export const MEDIA_SIGNALS: ReadonlySet<string> = new Set(['offer', 'answer', 'ice-candidate', 'ice-restart']);

/**
 * The relay rules of a registration, checked after the credentials' own (a bad JWT is a 401 whatever it
 * asks for): a relay session has one publisher (`publisher`, the one other than this peer, if any), and a
 * new one is made only by whom RELAY_MODE lets (`createsRelay`).
 */
export function relayRegisterRefusal(
  sessionId: string,
  mode: SessionMode,
  registration: { exists: boolean; publisher: string | undefined; role: Role | undefined; createsRelay: boolean | undefined },
): SignalError | undefined {
  if (mode !== 'relay') return undefined;
  if (registration.publisher !== undefined && registration.role === 'publisher') return refusals.publisherExists(sessionId, registration.publisher);
  if (!registration.exists && registration.createsRelay === false) return refusals.relayNotCreatable();
  return undefined;
}

/**
 * The mode a registration or a new session gets: the existing session's own (asking for another is
 * refused), else the one asked for, mesh by default; `unavailable` refuses a mode this store does not
 * hold (relay sessions, with RELAY_MODE=off).
 */
export function modeFor(
  sessionId: string,
  existing: SessionMode | undefined,
  asked: SessionMode | undefined,
  unavailable: (mode: SessionMode) => SignalError | undefined,
): SessionMode {
  if (existing !== undefined && asked !== undefined && asked !== existing) throw refusals.modeConflict(sessionId, existing, asked);
  const mode = existing ?? asked ?? 'mesh';
  const refused = unavailable(mode);
  if (refused) throw refused;
  return mode;
}

/**
 * What the admission caps count, as the store sees it at the registration: every count is of what exists
 * before this registration.
 */
export interface AdmissionCounts {
  /** Whether the session exists. */
  exists: boolean;
  /** Whether the peer id is registered in it (a takeover). */
  registered: boolean;
  /** Sessions in the store (this server's, or the cluster's). */
  sessions: number;
  /** Peers of the session. */
  peers: number;
  /** With the client's address known: the sessions it created that are open, and the registrations it holds. */
  ownSessions: number;
  ownPeers: number;
  /** Whether this registration is one the address holds already (it registers the same id again). */
  holdsIt: boolean;
  /** Whether the client's address is known; unknown, the per-address caps do not apply. */
  hasOrigin: boolean;
}

export type AdmissionLimits = Pick<Config, 'maxSessions' | 'maxPeersPerSession'> & HoldingsConfig;

/** The field of `AdmissionCounts` that a cap counts, and when it applies. */
export interface AdmissionCap {
  readonly code: ErrorCode;
  readonly count: 'sessions' | 'peers' | 'ownSessions' | 'ownPeers';
  readonly limit: keyof AdmissionLimits;
  /** A new session; a new peer of an existing session; a registration the address does not hold. */
  readonly when: 'newSession' | 'newPeer' | 'notHeld';
  /** A per-address cap: off at 0, and off when the address is not known. */
  readonly perAddress: boolean;
  readonly refusal: (limits: AdmissionLimits, sessionId: string, where: Where) => SignalError;
}

/**
 * The caps on a registration, in the order they are checked by both stores: the store's size, the
 * session's, then what the client's address holds. The cluster's register script checks them again, in
 * this order, at the moment it writes (other registrations may have come meanwhile): its Lua is built
 * from this list (`capsLua`).
 */
export const ADMISSION_CAPS: readonly AdmissionCap[] = [
  {
    code: 'too_many_sessions',
    count: 'sessions',
    limit: 'maxSessions',
    when: 'newSession',
    perAddress: false,
    refusal: (l, _, where) => refusals.tooManySessions(l.maxSessions, where),
  },
  { code: 'session_full', count: 'peers', limit: 'maxPeersPerSession', when: 'newPeer', perAddress: false, refusal: (l, id) => refusals.sessionFull(id, l.maxPeersPerSession) },
  { code: 'too_many_sessions', count: 'ownSessions', limit: 'maxSessionsPerIp', when: 'newSession', perAddress: true, refusal: (l) => refusals.ownSessions(l.maxSessionsPerIp) },
  { code: 'too_many_peers', count: 'ownPeers', limit: 'maxPeersPerIp', when: 'notHeld', perAddress: true, refusal: (l) => refusals.ownPeers(l.maxPeersPerIp) },
];

const applies = (cap: AdmissionCap, c: AdmissionCounts): boolean =>
  (cap.when === 'newSession' ? !c.exists : cap.when === 'newPeer' ? c.exists && !c.registered : !c.holdsIt) && (!cap.perAddress || c.hasOrigin);

/** The first cap that refuses this registration, as its index in `ADMISSION_CAPS`, or -1. */
export function firstRefusingCap(counts: AdmissionCounts, limits: AdmissionLimits): number {
  return ADMISSION_CAPS.findIndex((cap) => {
    const limit = limits[cap.limit];
    return applies(cap, counts) && !(cap.perAddress && limit === 0) && counts[cap.count] >= limit;
  });
}

/** Throws the refusal of the first cap this registration passes (see `ADMISSION_CAPS`). */
export function checkCaps(counts: AdmissionCounts, limits: AdmissionLimits, sessionId: string, where: Where): void {
  const refused = firstRefusingCap(counts, limits);
  if (refused >= 0) throw (ADMISSION_CAPS[refused] as AdmissionCap).refusal(limits, sessionId, where);
}

/** The refusal that the cap at `index` of `ADMISSION_CAPS` makes (a script answered with that index). */
export function capRefusal(index: number, limits: AdmissionLimits, sessionId: string, where: Where): SignalError {
  const cap = ADMISSION_CAPS[index];
  if (!cap) throw new Error(`no admission cap ${index}`);
  return cap.refusal(limits, sessionId, where);
}

/**
 * The same caps as a Lua function for the cluster's register script: `caps(C, L)` returns the 0-based
 * index of the first cap that refuses, or -1. `C` holds the counts (the fields of `AdmissionCounts`,
 * booleans as Lua booleans), `L` the limits by their config names.
 */
export function capsLua(): string {
  const lines = ADMISSION_CAPS.map((cap, i) => {
    const when = cap.when === 'newSession' ? 'not C.exists' : cap.when === 'newPeer' ? '(C.exists and not C.registered)' : 'not C.holdsIt';
    const address = cap.perAddress ? ` and C.hasOrigin and L.${cap.limit} > 0` : '';
    return `  if ${when}${address} and C.${cap.count} >= L.${cap.limit} then return ${i} end`;
  });
  return `local function caps(C, L)\n${lines.join('\n')}\n  return -1\nend\n`;
}

/**
 * What makes a client message unsendable whatever the session holds: a type that only the server sends,
 * or the sender as its own target. Checked by both stores after the sender is found and let in.
 */
export function messageRefusal(senderId: string, body: Pick<SignalBody, 'type' | 'target'>): SignalError | undefined {
  if (SERVER_EVENT_TYPES.has(body.type)) return refusals.reservedType(body.type);
  if (body.target === senderId) return refusals.targetIsSender();
  return undefined;
}

/**
 * Refuses a batch as a whole when it has no message or more than MAX_BATCH: nothing of it is sent.
 * A batch of the right length is answered message by message.
 */
export function batchRefusal(size: number): SignalError | undefined {
  if (size === 0) return refusals.emptyBatch();
  if (size > MAX_BATCH) return refusals.batchTooLong(size, MAX_BATCH);
  return undefined;
}

/**
 * What refuses one message of a batch before the store looks at its targets, in the order a single
 * message meets them once its sender is let in: a refusal decided before (the client address's rate,
 * `before`), then the sender's own rate (a token of `rate` is taken). Each message counts against both
 * rates, so that a batch is no way around them. The session rules (`messageRefusal`) come after.
 */
export function batchItemRefusal(before: SignalError | undefined, rate: RateTicket | undefined): SignalError | undefined {
  return before ?? rate?.take();
}
