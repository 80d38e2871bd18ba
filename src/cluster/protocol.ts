/**
 * The cluster's wire format in Redis: the key layout and the frames sent on instance channels. The
 * scripts (scripts.ts) are built from the same definitions, so TypeScript and Lua cannot drift apart.
 *
 * Layout. Every key and channel is the prefix, "/", the kind of key, then "/" and the one id it is
 * of (an address, "<sessionId>/<peerId>", counts as one). Neither the prefix (REDIS_PREFIX,
 * `A-Za-z0-9._:-`) nor an id (`A-Za-z0-9._:@|~-`) can contain "/". So the first "/" ends the prefix,
 * the second ends the kind, the id is all that follows (for an address, split at its only "/"), and
 * two different (prefix, kind, ids) never give the same key, whatever the ids: session "X:p" and
 * session "X" share nothing, nor do deployments with prefixes "P" and "P:s". Instances of this version
 * do not read keys of the earlier layout ("P:s:<sid>"): those expire by their TTL.
 *
 * Keys (P = prefix, a = an address):
 *   P/sessions       set of session ids
 *   P/deadlines      sorted set: "a" scored with the time the peer times out, "/<sessionId>" with the
 *                    time an admin-created session without peers ends (a member starts with "/" only
 *                    then, as ids are not empty); instances sweep it
 *   P/s/<sid>        hash: createdAt, order (its place among the sessions created, see P/created), joins (a
 *                    counter that orders the peers), idleMs and inv (admin sessions), by (the key of the
 *                    address whose registration created it)
 *   P/p/<sid>        hash: peerId → its credentials, place in the session and address key "o" (JSON)
 *   P/i/<sid>        hash: peerId → invite (JSON), admin sessions with an allow-list
 *   P/m/a            hash: epoch (first id of this incarnation), last (last id given), cursor (last id
 *                    written to a stream), gen (bumped at every attach and takeover), first (lowest id
 *                    still kept), held and hbytes (undelivered events in the log, and their bytes),
 *                    bytes (of every event in the log), t<tag> (the newest event id with that topic tag)
 *   P/l/a            stream of the peer's events, entry id "0-<event id>", fields e (JSON), t (ms accepted,
 *                    or -1), k (its topic's tag, see delivery/rules.ts) and q (the id of the event before
 *                    it with that tag, or 0); a superseded event's id is missing from it, never written
 *   P/bytes          hash: held, all: the bytes of every peer's events, as LocalDelivery counts them
 *   P/created        counter of the sessions created: orders those created in one millisecond, as one
 *                    process lists them (its expiry, renewed at each creation, only ever parts sessions
 *                    whose createdAt differs)
 *   P/holdings       hash: "s<address key>" → sessions it created, "p<address key>" → registrations it made
 *                    (alive), for the per-address admission caps
 *   P/h/a            the id of the instance holding the peer's stream
 *   P/c/<instance>   the pub/sub channel of an instance
 *
 * Relay sessions (P/s/<sid> has mode "relay"; a relay peer's record has "r":1 and its address counts
 * "r<address key>" in P/holdings):
 *   P/r/<sid>        hash, the lease of the instance that carries the session's media: owner, token
 *                    (its fencing token), until (ms), ready (the token whose owner has sent its offers)
 *   P/fence          counter of fencing tokens: every owner of every session gets a greater one
 *   P/leases         sorted set: session id scored with its lease's until; instances sweep it
 *   P/ro/<instance>  set of the relay sessions an instance owns
 *   P/load           hash: instance id → its relay load (JSON, see `RelayLoad`), dead past its until
 */
import { type EventMembers, eventJson, eventMembers } from '../delivery/delivery';

/** Separates the parts of every key and channel, and a peer's session id from its id: ids and prefixes cannot contain it. */
export const SEP = '/';

/** The kind of each key, its second part. */
export const KIND = {
  sessions: 'sessions',
  deadlines: 'deadlines',
  session: 's',
  peers: 'p',
  invites: 'i',
  mailbox: 'm',
  log: 'l',
  holder: 'h',
  bytes: 'bytes',
  holdings: 'holdings',
  created: 'created',
  channel: 'c',
  lease: 'r',
  fence: 'fence',
  leases: 'leases',
  owned: 'ro',
  load: 'load',
} as const;

const key = (prefix: string, kind: string, id?: string): string => prefix + SEP + kind + (id === undefined ? '' : SEP + id);

/** A peer's address in Redis (its keys, deadline and frames): session id and peer id, split at the only "/". */
export const peerAddress = (sessionId: string, peerId: string): string => sessionId + SEP + peerId;

/** The peer id of an address, or of a deadline's member (a session's member, "/<sessionId>", has none: ''). */
export const peerIdOf = (address: string): string => address.slice(address.indexOf(SEP) + 1);

/** Redis keys and channels as TypeScript names them: the same layout as the scripts' (see above). */
export const redisKey = {
  sessions: (prefix: string): string => key(prefix, KIND.sessions),
  deadlines: (prefix: string): string => key(prefix, KIND.deadlines),
  bytes: (prefix: string): string => key(prefix, KIND.bytes),
  holdings: (prefix: string): string => key(prefix, KIND.holdings),
  created: (prefix: string): string => key(prefix, KIND.created),
  session: (prefix: string, sessionId: string): string => key(prefix, KIND.session, sessionId),
  peers: (prefix: string, sessionId: string): string => key(prefix, KIND.peers, sessionId),
  invites: (prefix: string, sessionId: string): string => key(prefix, KIND.invites, sessionId),
  /** `address`: see `peerAddress`. */
  mailbox: (prefix: string, address: string): string => key(prefix, KIND.mailbox, address),
  log: (prefix: string, address: string): string => key(prefix, KIND.log, address),
  holder: (prefix: string, address: string): string => key(prefix, KIND.holder, address),
  channel: (prefix: string, instanceId: string): string => key(prefix, KIND.channel, instanceId),
  lease: (prefix: string, sessionId: string): string => key(prefix, KIND.lease, sessionId),
  leases: (prefix: string): string => key(prefix, KIND.leases),
  load: (prefix: string): string => key(prefix, KIND.load),
} as const;

/**
 * What an instance publishes of its relay (P/load, JSON written by the renewLeases script, `draining` as
 * 0 or 1), for placement: the peers of the relay sessions it
 * owns, how many it takes (RELAY_CAPACITY), what it forwards, and until when the entry holds (an
 * instance that stops renewing it is dead to placement).
 */
export interface RelayLoad {
  readonly peers: number;
  /** Relay sessions it owns: between two instances with as much room, the one with fewer gets a new session. */
  readonly sessions: number;
  readonly capacity: number;
  /** RTP packets and bytes forwarded per second, over the last period. */
  readonly pps: number;
  readonly bps: number;
  readonly until: number;
  /** Draining: it hands its sessions over and takes none. */
  readonly draining: boolean;
}

/** What the owner of a relay session is told (`RelayFrame.op`). */
export type RelayOp = 'own' | 'joined' | 'reachable' | 'left' | 'closed' | 'message';

/**
 * What an instance is told about a relay session it owns:
 *   own        it owns the session now, with \`token\`: rebuild it from Redis, offer to every peer
 *   joined     \`peerId\` registered (or again) with the role in \`json\`
 *   reachable  \`peerId\`'s stream is attached: offer now
 *   left       \`peerId\` is gone
 *   closed     the session is gone
 *   message    \`peerId\` sent \`json\` ({ type, payload }) to \`switchboard\`
 */
export interface RelayFrame {
  readonly kind: 'relay';
  readonly op: RelayOp;
  readonly sessionId: string;
  /** The lease's fencing token when the frame was sent: a frame of an older lease is stale. */
  readonly token: number;
  readonly peerId: string;
  readonly json: string;
}

const RELAY_OPS: ReadonlySet<string> = new Set<RelayOp>(['own', 'joined', 'reachable', 'left', 'closed', 'message']);

/**
 * An event as Redis keeps it, in a peer's log and in the frames on the channels: its whole JSON object
 * text, as every version of switchboard has written it, so that the instances of two versions (a rolling
 * upgrade) read each other's events. An instance holds it as its members (`EventMembers`): these two
 * convert at the edge, a join going to Redis (its client copies it into the command anyway) and a cut,
 * which copies nothing, coming back. A close frame without a final event carries ''.
 */
export const storedEvent = (members: EventMembers): string => (members === '' ? '' : eventJson(members));
const heldEvent = (stored: string): EventMembers => (stored === '' ? '' : eventMembers(stored));

/**
 * What an instance is told on its channel about a stream it holds (an event as an instance holds it):
 *   event   an event was appended to the peer's log: write it
 *   close   end the stream of an attach older than `gen` (0: any), after writing the final event
 *           `members` with `finalId` when there is one
 *   cut     the peer's held events reached the cap: cut its slow stream
 */
export type Frame =
  | { readonly kind: 'event'; readonly address: string; readonly id: number; readonly stamp: number; readonly members: EventMembers }
  | { readonly kind: 'close'; readonly address: string; readonly gen: number; readonly finalId: number | undefined; readonly members: EventMembers }
  | { readonly kind: 'cut'; readonly address: string }
  | RelayFrame;

/** The first line of each frame. */
export const FRAME_TAG = { event: 'e', close: 'c', cut: 'a', relay: 'r' } as const;

/**
 * Frames are lines, the JSON last: ids contain no line break, and neither JSON.stringify nor an event
 * writes one (`EventMembers`), so "\n" splits them. A script builds them with the Lua functions of `FRAME_LUA`, from the same tags.
 */
const NL = '\n';

export function encodeFrame(frame: Frame): string {
  switch (frame.kind) {
    case 'event':
      return [FRAME_TAG.event, frame.address, frame.id, frame.stamp, storedEvent(frame.members)].join(NL);
    case 'close':
      return [FRAME_TAG.close, frame.address, frame.gen, frame.finalId ?? '', storedEvent(frame.members)].join(NL);
    case 'cut':
      return FRAME_TAG.cut + NL + frame.address;
    case 'relay':
      return [FRAME_TAG.relay, frame.op, frame.sessionId, frame.token, frame.peerId, frame.json].join(NL);
  }
}

/** A relay frame: tag, op, session id, token, peer id (may be empty), JSON last (may be empty). */
function decodeRelayFrame(message: string): RelayFrame | undefined {
  const parts: string[] = [];
  let at = 0;
  for (let i = 0; i < 5; i++) {
    const end = message.indexOf(NL, at);
    if (end < 0) return undefined;
    parts.push(message.slice(at, end));
    at = end + 1;
  }
  const [, op, sessionId, token, peerId] = parts as [string, string, string, string, string];
  if (!RELAY_OPS.has(op) || sessionId === '' || !/^\d+$/.test(token)) return undefined;
  return { kind: 'relay', op: op as RelayOp, sessionId, token: Number(token), peerId, json: message.slice(at) };
}

/** The frame a channel message holds; undefined for one this version does not know. */
export function decodeFrame(message: string): Frame | undefined {
  const tagEnd = message.indexOf(NL);
  if (tagEnd < 0) return undefined;
  const tag = message.slice(0, tagEnd);
  if (tag === FRAME_TAG.relay) return decodeRelayFrame(message);
  const addressEnd = message.indexOf(NL, tagEnd + 1);
  const address = message.slice(tagEnd + 1, addressEnd < 0 ? undefined : addressEnd);
  if (tag === FRAME_TAG.cut) return { kind: 'cut', address };
  if (addressEnd < 0) return undefined;
  const secondEnd = message.indexOf(NL, addressEnd + 1);
  const thirdEnd = message.indexOf(NL, secondEnd + 1);
  if (secondEnd < 0 || thirdEnd < 0) return undefined;
  const second = Number(message.slice(addressEnd + 1, secondEnd));
  const third = message.slice(secondEnd + 1, thirdEnd);
  const members = heldEvent(message.slice(thirdEnd + 1));
  if (tag === FRAME_TAG.event) return { kind: 'event', address, id: second, stamp: Number(third), members };
  if (tag === FRAME_TAG.close) return { kind: 'close', address, gen: second, finalId: third === '' ? undefined : Number(third), members };
  return undefined;
}

/** `encodeFrame` in Lua, for the scripts: `eventFrame(a, id, stamp, json)`, `closeFrame(a, gen, finalId, json)`, `cutFrame(a)`. */
export const FRAME_LUA = `
local NL = '\\n'
local function eventFrame(a, id, stamp, json) return '${FRAME_TAG.event}' .. NL .. a .. NL .. id .. NL .. stamp .. NL .. json end
local function closeFrame(a, gen, finalId, json) return '${FRAME_TAG.close}' .. NL .. a .. NL .. gen .. NL .. finalId .. NL .. json end
local function cutFrame(a) return '${FRAME_TAG.cut}' .. NL .. a end
local function relayFrame(op, sid, token, pid, json) return '${FRAME_TAG.relay}' .. NL .. op .. NL .. sid .. NL .. token .. NL .. pid .. NL .. json end
`;

/** A script's reply, read field by field with a check of each field's type: a reply of another shape is a bug. */
export class Reply {
  private at = 0;

  constructor(
    private readonly fields: readonly unknown[],
    private readonly script: string,
  ) {}

  static of(reply: unknown, script: string): Reply {
    if (!Array.isArray(reply)) throw new Error(`${script}: Redis answered ${typeof reply}, not an array`);
    return new Reply(reply, script);
  }

  get done(): boolean {
    return this.at >= this.fields.length;
  }

  str(): string {
    const value = this.fields[this.at++];
    if (typeof value !== 'string') throw this.wrong('a string', value);
    return value;
  }

  /** A string, or nil (Lua false, or a missing hash field). */
  maybeStr(): string | undefined {
    const value = this.fields[this.at++];
    if (value === null || value === undefined) return undefined;
    if (typeof value !== 'string') throw this.wrong('a string or nil', value);
    return value;
  }

  num(): number {
    const value = this.fields[this.at++];
    const n = typeof value === 'string' ? Number(value) : value;
    if (typeof n !== 'number' || Number.isNaN(n)) throw this.wrong('a number', value);
    return n;
  }

  flag(): boolean {
    return this.num() === 1;
  }

  strings(): string[] {
    const value = this.fields[this.at++];
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) throw this.wrong('an array of strings', value);
    return value as string[];
  }

  list(): unknown[] {
    const value = this.fields[this.at++];
    if (!Array.isArray(value)) throw this.wrong('an array', value);
    return value;
  }

  private wrong(expected: string, value: unknown): Error {
    return new Error(`${this.script}: field ${this.at} of the reply is not ${expected}: ${JSON.stringify(value)}`);
  }
}

/** An event of a peer's log in Redis. */
export interface LoggedEvent {
  readonly id: number;
  readonly members: EventMembers;
}

/** The entries of a peer's log as XRANGE gives them: event id and the event. */
export function decodeLog(rows: unknown): LoggedEvent[] {
  if (!Array.isArray(rows)) throw new Error('XRANGE answered no array');
  return rows.map((row) => {
    const [entry, fields] = row as [string, string[]];
    // Entry ids are "0-<event id>"; the event is the first field's value (e).
    return { id: Number(entry.slice(2)), members: heldEvent(fields[1] as string) };
  });
}

/** Why an instance owns a relay session now: placed there, taken over after its owner died, handed over by a draining one, or found at its renewal. */
export type OwnReason = 'placed' | 'failover' | 'handover' | 'renewal';

/** A peer of a relay session as a new owner rebuilds it. */
export interface RelayPeerState {
  readonly id: string;
  readonly role: 'publisher' | 'viewer';
  /** Its stream is held by an instance: it is offered at once; else when its stream opens. */
  readonly streaming: boolean;
}

/** The JSON of an `own` frame (and of the relayState script's answer). */
export interface OwnState {
  readonly why: OwnReason;
  readonly peers: readonly RelayPeerState[];
}

const OWN_REASONS: ReadonlySet<string> = new Set<OwnReason>(['placed', 'failover', 'handover', 'renewal']);

/** The state an `own` frame carries; undefined for one of another shape. */
export function decodeOwnState(json: string): OwnState | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  const { why, peers } = (value ?? {}) as { why?: unknown; peers?: unknown };
  if (typeof why !== 'string' || !OWN_REASONS.has(why) || !Array.isArray(peers)) return undefined;
  const out: RelayPeerState[] = [];
  for (const peer of peers as unknown[]) {
    const { id, role, streaming } = (peer ?? {}) as { id?: unknown; role?: unknown; streaming?: unknown };
    if (typeof id !== 'string' || (role !== 'publisher' && role !== 'viewer')) return undefined;
    out.push({ id, role, streaming: streaming === true });
  }
  return { why: why as OwnReason, peers: out };
}
