import type { Config } from '../config';

/**
 * What an event is about, for the rule both stores apply when a server event is appended: an undelivered
 * event that a newer one makes stale is superseded (never written), so that server events, which have no
 * sender to refuse, stay bounded by construction. A tag is a string so that the cluster's append script
 * applies the very rule given here: its first character is the kind, the rest (if any) a peer id, so that
 * no two tags alias whatever the ids.
 */
export interface Topic {
  /** True for the server's own events: never refused, superseded instead. */
  readonly fromServer: boolean;
  /** What this event is about; '' when nothing replaces it. */
  readonly tag: string;
  /** Tags of undelivered events that this one supersedes. */
  readonly replaces: readonly string[];
  /** Looking back from the newest undelivered event, superseding stops at one with this tag ('' for none). */
  readonly barrier: string;
}

const CLIENT = 'm';
const PEER = 'p';
const OFFER = 'o';
const CANDIDATE = 'c';

/**
 * A client message from `senderId`. Its tag is the barrier of the notices about its sender: a `peer-left`
 * never supersedes a `new-peer` that came before a message of that peer, so nobody reads a peer's message
 * without having heard of the peer first.
 */
export const fromPeer = (senderId: string): Topic => ({ fromServer: false, tag: CLIENT + senderId, replaces: [], barrier: '' });

/** `new-peer` or `peer-left` about `peerId`: the newest notice about a peer is the one that counts. */
export const peerNotice = (peerId: string): Topic => {
  const tag = PEER + peerId;
  return { fromServer: true, tag, replaces: [tag], barrier: CLIENT + peerId };
};

/** A server event that nothing supersedes (`session-closed`, or a relay event of another type). */
export const SERVER_NOTICE: Topic = { fromServer: true, tag: '', replaces: [], barrier: '' };

const SERVER_OFFER: Topic = { fromServer: true, tag: OFFER, replaces: [OFFER, CANDIDATE], barrier: '' };
const SERVER_CANDIDATE: Topic = { fromServer: true, tag: CANDIDATE, replaces: [], barrier: '' };

/**
 * An event from the relay's `switchboard` peer. A new offer supersedes an undelivered older offer and the
 * candidates queued with any older one: they belong to a negotiation that the new offer restarts.
 */
export function serverSignal(type: string): Topic {
  return type === 'offer' ? SERVER_OFFER : type === 'ice-candidate' ? SERVER_CANDIDATE : SERVER_NOTICE;
}

/** Whether an event with `tag` is a server event (which the backstop may drop) rather than a client message. */
export const isServerTag = (tag: string): boolean => tag[0] !== CLIENT;

/** The first character of a client message's tag: the cluster's backstop tells server events by it. */
export const CLIENT_TAG = CLIENT;

/** The bounds on one peer's events and on everyone's: computed once, applied by both stores. */
export interface EventBounds {
  /** Undelivered events at which client messages are refused with `queue_full` (MAX_QUEUE). */
  maxHeld: number;
  /** Written events kept for resume (MAX_QUEUE). */
  retain: number;
  /**
   * Undelivered events of any origin, at most: past this the oldest undelivered server event is dropped.
   * A backstop that coalescing keeps out of reach in normal use (see SECURITY.md).
   */
  maxHeldAny: number;
  /** Bytes of one peer's events, undelivered and kept for resume (MAX_PEER_EVENT_BYTES). */
  peerBytes: number;
  /** Bytes of every peer's events together (MAX_EVENT_BYTES). */
  totalBytes: number;
}

/** The bounds from the settings: MAX_QUEUE, MAX_PEER_EVENT_BYTES and MAX_EVENT_BYTES. */
export function eventBounds(config: Pick<Config, 'maxQueue' | 'maxPeerEventBytes' | 'maxEventBytes'>): EventBounds {
  return {
    maxHeld: config.maxQueue,
    retain: config.maxQueue,
    maxHeldAny: 2 * config.maxQueue,
    peerBytes: config.maxPeerEventBytes,
    totalBytes: config.maxEventBytes,
  };
}

/** What a target holds undelivered: the events and their bytes. */
export interface Held {
  events: number;
  bytes: number;
}

/** A bound on a target's undelivered events: with one more client message of `size` bytes, `count` would pass `bound`. */
interface QueueBound {
  readonly why: 'held' | 'bytes';
  readonly count: keyof Held;
  /** What the message adds: one event, or its size. */
  readonly adds: 'one' | 'size';
  readonly bound: 'maxHeld' | 'peerBytes';
}

/** The target's bounds on client messages, in the order checked: MAX_QUEUE events, then MAX_PEER_EVENT_BYTES. */
const QUEUE_BOUNDS: readonly QueueBound[] = [
  { why: 'held', count: 'events', adds: 'one', bound: 'maxHeld' },
  { why: 'bytes', count: 'bytes', adds: 'size', bound: 'peerBytes' },
];

/** Why a target that holds `held` cannot take a client message of `size` bytes now, or undefined. */
export function queueRefusal(held: Held, size: number, bounds: EventBounds): 'held' | 'bytes' | undefined {
  for (const b of QUEUE_BOUNDS) if (held[b.count] + (b.adds === 'one' ? 1 : size) > bounds[b.bound]) return b.why;
  return undefined;
}

/**
 * The same rule in Lua, for the cluster's scripts: `refusal(b, size, B)`, with `b` a mailbox (held,
 * hbytes) and `B` the bounds as boundsAt reads them (held, peerBytes).
 */
export const QUEUE_REFUSAL_LUA = (() => {
  const count = { events: 'b.held', bytes: 'b.hbytes' } as const;
  const bound = { maxHeld: 'B.held', peerBytes: 'B.peerBytes' } as const;
  const lines = QUEUE_BOUNDS.map((b) => `  if ${count[b.count]} + ${b.adds === 'one' ? '1' : 'size'} > ${bound[b.bound]} then return '${b.why}' end`);
  return `local function refusal(b, size, B)\n${lines.join('\n')}\n  return nil\nend\n`;
})();

/**
 * An event's weight against the byte budgets: the UTF-8 length of its JSON object's text, its members
 * (`EventMembers`) and the opening brace, as Redis counts the text it keeps. Counting a text that was put
 * together joins it first; a maker that puts one together counts its parts instead (`clientEvent`).
 */
export const eventSize = (members: string): number => Buffer.byteLength(members) + 1;

/** The first event id a peer's first incarnation gets. */
export const FIRST_EPOCH = 1;

/**
 * Ids skipped from one incarnation of a peer to the next (a takeover registers the id again): the first
 * id of the new one is the old one's last id plus this, so that one id is never given, and the old
 * incarnation's Last-Event-ID can never pass for the new one's.
 */
export const EPOCH_STEP = 2;

/** The first event id of the incarnation after one whose last id was `lastId`. */
export const nextEpoch = (lastId: number): number => lastId + EPOCH_STEP;

/** What a resume is checked against: the first id of this incarnation, the lowest id kept, the last id given. */
export interface ResumeWindow {
  epoch: number;
  first: number;
  last: number;
}

/** A bound on a Last-Event-ID: one `below` (or `above`) `field + offset` is refused with `code`. */
interface ResumeBound {
  readonly code: 'superseded' | 'resume_gap';
  readonly side: 'below' | 'above';
  readonly field: keyof ResumeWindow;
  readonly offset: number;
}

/**
 * Where a stream may resume, in the order checked: from before this incarnation began (the id was taken
 * over since), after the last id given, or from before the oldest event still kept.
 */
const RESUME_BOUNDS: readonly ResumeBound[] = [
  { code: 'superseded', side: 'below', field: 'epoch', offset: -1 },
  { code: 'resume_gap', side: 'above', field: 'last', offset: 0 },
  { code: 'resume_gap', side: 'below', field: 'first', offset: -1 },
];

/** Why a stream cannot resume after `lastEventId`, or undefined when it can. */
export function resumeRefusal(lastEventId: number, window: ResumeWindow): 'superseded' | 'resume_gap' | undefined {
  for (const b of RESUME_BOUNDS) {
    const bound = window[b.field] + b.offset;
    if (b.side === 'below' ? lastEventId < bound : lastEventId > bound) return b.code;
  }
  return undefined;
}

/** The same rule in Lua, for the cluster's attach script: `resumeRefusal(from, {epoch =, first =, last =})`. */
export const RESUME_LUA = `local function resumeRefusal(from, w)
${RESUME_BOUNDS.map((b) => `  if from ${b.side === 'below' ? '<' : '>'} w.${b.field} + (${b.offset}) then return '${b.code}' end`).join('\n')}
  return nil
end
`;
