/**
 * The Lua scripts that change the cluster's state in Redis, each with the typed decoder of its reply.
 * Each runs atomically, so that a registration, a takeover, an append with its cap check or the claim
 * of an expired peer is one step that no other instance can interleave with. Every script takes no KEYS
 * and these ARGV first:
 *
 *   ARGV[1] key prefix   ARGV[2] this instance's id   ARGV[3] now (ms, the instances' clock)   ARGV[4] key TTL (ms)
 *
 * Keys are computed from the prefix and the ids (see protocol.ts for the layout), so scripts touch keys
 * they could not declare (the peers of a session): they need one Redis server (a primary, with
 * replicas or Sentinel), not Redis Cluster.
 *
 * The rules are not written here: the scripts get the session rules' decisions as arguments (the
 * events, the limits, a refusal already decided) or are built from their definitions (the
 * admission caps, the resume window, the epoch step, the frames). A frame for the calling instance
 * itself is returned in the script's reply (OUT) instead of published. The scripts write ids into JSON
 * unescaped: the id alphabet has no quote or backslash.
 */

import { CLIENT_TAG, EPOCH_STEP, type EventBounds, FIRST_EPOCH, QUEUE_REFUSAL_LUA, RESUME_LUA, type Topic } from '../delivery/rules';
import { capsLua, SEES_LUA } from '../sessions/rules';
import { SERVER_PEER_ID, type SessionMode } from '../sessions/server-peer';
import { decodeLog, FRAME_LUA, KIND, type LoggedEvent, Reply, SEP } from './protocol';

/** An event's topic as the scripts take it (see topicAt): its tag, its barrier, the tags it replaces. */
export const topicArgs = (topic: Topic): string[] => [topic.tag, topic.barrier, topic.replaces.join('\n')];

/** The event bounds as the scripts take them (see boundsAt). */
export const boundsArgs = (bounds: EventBounds): string[] => [String(bounds.maxHeld), String(bounds.maxHeldAny), String(bounds.peerBytes), String(bounds.totalBytes)];

/**
 * The helpers every script shares, defined once per library (see LIBRARY) and, for EVALSHA, once per
 * call. What depends on the call is set by begin(args): the arguments, the frames for this instance
 * (OUT) and the shared keys named from the prefix.
 */
const PRELUDE = `
local SEP = '${SEP}'
local ARGV, P, SELF, NOW, TTL, OUT, TOTALS, SESSIONS, DL, BYTES, HOLDINGS, CREATED, LEASES, FENCE, LOAD
local function shared(kind) return P .. SEP .. kind end
local function begin(args)
  ARGV, SELF, NOW, TTL = args, args[2], tonumber(args[3]), tonumber(args[4])
  OUT, TOTALS = {}, nil
  -- A library serves every call of an instance, with the same prefix: the shared keys are named once.
  if args[1] == P then return end
  P = args[1]
  SESSIONS, DL, BYTES, HOLDINGS = shared('${KIND.sessions}'), shared('${KIND.deadlines}'), shared('${KIND.bytes}'), shared('${KIND.holdings}')
  CREATED, LEASES, FENCE, LOAD = shared('${KIND.created}'), shared('${KIND.leases}'), shared('${KIND.fence}'), shared('${KIND.load}')
end
local function key(kind, id) return P .. SEP .. kind .. SEP .. id end
local function sk(sid) return key('${KIND.session}', sid) end
local function pk(sid) return key('${KIND.peers}', sid) end
local function ik(sid) return key('${KIND.invites}', sid) end
local function mk(a) return key('${KIND.mailbox}', a) end
local function lk(a) return key('${KIND.log}', a) end
local function hk(a) return key('${KIND.holder}', a) end
local function ck(instance) return key('${KIND.channel}', instance) end
-- A peer's address (its keys' id, its deadline's member), and the deadline's member of an idle admin session.
local function addr(sid, pid) return sid .. SEP .. pid end
local function idleMember(sid) return SEP .. sid end

${FRAME_LUA}
local function route(a, msg)
  local holder = redis.call('GET', hk(a))
  if not holder then return 0 end
  if holder == SELF then OUT[#OUT + 1] = msg return -1 end
  return redis.call('PUBLISH', ck(holder), msg)
end

local function touchSession(sid)
  local idle = redis.call('HGET', sk(sid), 'idleMs')
  local ttl = TTL + (idle and tonumber(idle) or 0)
  redis.call('PEXPIRE', sk(sid), ttl)
  redis.call('PEXPIRE', pk(sid), ttl)
  redis.call('PEXPIRE', ik(sid), ttl)
  -- The shared keys live as long as the longest-lived session in them.
  for _, k in ipairs({SESSIONS, DL}) do
    if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
  end
end

-- The bounds on events (EventBounds, computed in TypeScript: boundsArgs) at ARGV[i], and an event's
-- topic (Topic: topicArgs) at ARGV[i]: its tag, its barrier, the tags it replaces ('\\n' between them).
local function boundsAt(i)
  return {held = tonumber(ARGV[i]), heldAny = tonumber(ARGV[i + 1]), peerBytes = tonumber(ARGV[i + 2]), totalBytes = tonumber(ARGV[i + 3])}
end
local function topicAt(i)
  local replaces = {}
  for tag in string.gmatch(ARGV[i + 2], '[^\\n]+') do replaces[tag] = true end
  return {tag = ARGV[i], barrier = ARGV[i + 1], replaces = replaces, any = ARGV[i + 2] ~= ''}
end

-- The cluster's event bytes, as EventBytes counts them in one process: held (undelivered) and all.
-- Every append of a call reads and moves them (a call of the send script has the messages of many
-- senders): they are read once per call (bytes()) and written once at its end (finish).
local function bytes()
  if not TOTALS then
    local t = redis.call('HMGET', BYTES, 'held', 'all')
    TOTALS = {held = tonumber(t[1] or '0'), all = tonumber(t[2] or '0'), made = not t[1] and not t[2], moved = false, renew = false}
  end
  return TOTALS
end
local function count(held, all)
  local t = bytes()
  t.held, t.all = t.held + held, t.all + all
  t.moved = t.moved or held ~= 0 or all ~= 0
  t.renew = true
end
local function total(field) return bytes()[field] end
-- Ends every call: what it moved of the counts is written; a count it made, or renewed, gets its time to live.
local function finish(...)
  local t = TOTALS
  if t then
    if t.moved then redis.call('HSET', BYTES, 'held', t.held, 'all', t.all) end
    if t.renew or (t.made and t.moved) then redis.call('PEXPIRE', BYTES, TTL) end
  end
  return ...
end

-- What each client address holds alive (AddressHoldings): 's' .. key, the sessions it created, and
-- 'p' .. key, the registrations it made. A registration's address is its record's "o".
local function hold(field, delta)
  if redis.call('HINCRBY', HOLDINGS, field, delta) <= 0 then redis.call('HDEL', HOLDINGS, field) end
  redis.call('PEXPIRE', HOLDINGS, TTL)
end
local function originOf(record) return record and string.match(record, '"o":"([^"]*)"') end
local function holding(field) return tonumber(redis.call('HGET', HOLDINGS, field) or '0') end

-- The two counts live as long as what they count: renewed wherever registrations and streams are.
local function keepCounts()
  redis.call('PEXPIRE', BYTES, TTL)
  redis.call('PEXPIRE', HOLDINGS, TTL)
end

-- A new session's hash: when it was created, and its place among the sessions created (P/created
-- orders those of one millisecond, as one process lists them).
local function newSession(sid)
  local order = redis.call('INCR', CREATED)
  redis.call('PEXPIRE', CREATED, TTL)
  redis.call('HSET', sk(sid), 'createdAt', NOW, 'order', order, 'joins', 0)
end

-- A's mailbox counters: last, cursor, first (lowest id kept), held (undelivered events that exist) and
-- hbytes (their bytes), bytes (of every event in the log); with field, that field of the mailbox too
-- (as b.field), in the same read. Nil when a has no mailbox.
local function box(a, field)
  local m = redis.call('HMGET', mk(a), 'last', 'cursor', 'first', 'held', 'hbytes', 'bytes', 'epoch', field or 'epoch')
  if not m[1] then return nil end
  return {last = tonumber(m[1]), cursor = tonumber(m[2]), first = tonumber(m[3] or m[7]), held = tonumber(m[4] or '0'),
    hbytes = tonumber(m[5] or '0'), bytes = tonumber(m[6] or '0'), field = field and m[8] or nil}
end
-- Writes a's counters back; with field, value into that field of the mailbox too, in the same write.
local function store(a, b, field, value)
  if field then
    redis.call('HSET', mk(a), 'last', b.last, 'cursor', b.cursor, 'first', b.first, 'held', b.held, 'hbytes', b.hbytes, 'bytes', b.bytes, field, value)
  else
    redis.call('HSET', mk(a), 'last', b.last, 'cursor', b.cursor, 'first', b.first, 'held', b.held, 'hbytes', b.hbytes, 'bytes', b.bytes)
  end
end

-- Gives back what a's log weighs: it is about to be deleted.
local function forget(a)
  local b = box(a)
  if b then count(-b.hbytes, -b.bytes) end
end

-- Why a client message of size bytes cannot be taken by a now (Mailbox.refusal): 'held', 'bytes', or nil.
${QUEUE_REFUSAL_LUA}
-- Drops a's written events kept for resume, oldest first, until excess bytes are freed (Mailbox.dropRetained).
-- Only append calls it, and the cluster's byte counts it writes afterwards account for what b loses here.
-- The rows are read a few at a time, as many as the mean size of a's events says will do (a row read is
-- turned into Lua values: reading sixteen to drop one cost more than the rest of the append), and
-- the rows of each read go in one XDEL.
local function dropRetained(a, b, excess)
  if excess <= 0 then return end
  local freed = 0
  while freed < excess and b.first <= b.cursor do
    local likely = math.ceil((excess - freed) * (b.last - b.first + 1) / math.max(1, b.bytes - freed))
    local rows = redis.call('XRANGE', lk(a), '0-' .. b.first, '0-' .. b.cursor, 'COUNT', math.min(16, math.max(1, likely)))
    if #rows == 0 then b.first = b.cursor + 1 break end
    local ids = {}
    for _, row in ipairs(rows) do
      ids[#ids + 1] = row[1]
      freed = freed + #row[2][2]
      b.first = tonumber(string.sub(row[1], 3)) + 1
      if freed >= excess then break end
    end
    redis.call('XDEL', lk(a), unpack(ids))
  end
  b.bytes = b.bytes - freed
end

-- Removes a held entry: it is never written.
local function remove(a, b, row)
  local size = #row[2][2]
  redis.call('XDEL', lk(a), row[1])
  b.held, b.hbytes, b.bytes = b.held - 1, b.hbytes - size, b.bytes - size
  count(-size, -size)
end

-- Supersedes the held events that topic T makes stale, newest first, down to its barrier (Mailbox.supersede).
-- Without reading the log: the mailbox keeps 't' .. tag, the newest id with that tag, and each entry its
-- predecessor with the same tag (q), so that only the superseded events themselves are read.
local function supersede(a, b, T)
  local floor = b.cursor
  if T.barrier ~= '' then floor = math.max(floor, tonumber(redis.call('HGET', mk(a), 't' .. T.barrier) or '0')) end
  for tag in pairs(T.replaces) do
    local id = tonumber(redis.call('HGET', mk(a), 't' .. tag) or '0')
    while id > floor do
      local row = redis.call('XRANGE', lk(a), '0-' .. id, '0-' .. id)[1]
      if not row then break end
      remove(a, b, row)
      id = tonumber(row[2][8] or '0')
    end
    -- The next event with this tag links past the ones just superseded.
    redis.call('HSET', mk(a), 't' .. tag, id)
  end
end

-- The backstop behind coalescing: drops the oldest held server event (a tag not of a client message).
local function dropOldestServerEvent(a, b)
  for _, row in ipairs(redis.call('XRANGE', lk(a), '(0-' .. b.cursor, '+')) do
    if string.sub(row[2][6] or '', 1, 1) ~= '${CLIENT_TAG}' then return remove(a, b, row) end
  end
end

-- Appends an event (its JSON text, see storedEvent) of topic T to a's log and routes it to a's stream (Mailbox.append under bounds B).
-- Returns id, held before, receivers of the route (-1: this instance); nil when a has no mailbox;
-- false, held, why ('held', 'bytes', 'total'), held bytes when a client message finds no room.
local function append(a, event, client, stamp, T, B)
  -- The newest id with this event's tag is read with the counters and written with them.
  local tagField = T.tag ~= '' and 't' .. T.tag or nil
  local b = box(a, tagField)
  if not b then return nil end
  local size = #event
  -- The cluster's bytes, read once: what this append drops below moves them by what it moves b's.
  local totals = bytes()
  local held0, all0, hbytes0, bytes0 = totals.held, totals.all, b.hbytes, b.bytes
  local function allBytes() return all0 - (bytes0 - b.bytes) end
  if client then
    local why = held0 + size > B.totalBytes and 'total' or refusal(b, size, B)
    if why then
      route(a, cutFrame(a))
      return false, b.held, why, why == 'total' and held0 or b.hbytes
    end
  else
    if T.any then supersede(a, b, T) end
    if b.held >= B.heldAny then dropOldestServerEvent(a, b) end
  end
  local held = b.held
  dropRetained(a, b, b.bytes + size - B.peerBytes)
  -- Other peers' kept events are out of this script's reach: their holders drop them (KEEPALIVE).
  dropRetained(a, b, allBytes() + size - B.totalBytes)
  local id = b.last + 1
  local previous = b.field
  -- Superseding links the tag past what it removed: read it again after that.
  if tagField and T.any and not client then previous = redis.call('HGET', mk(a), tagField) end
  redis.call('XADD', lk(a), '0-' .. id, 'e', event, 't', stamp, 'k', T.tag, 'q', previous or '0')
  -- A log or count this makes gets its time to live; one that exists has it, and it is renewed where
  -- the mailbox's is (registration, attach, the holders' refresh), not at every append.
  if b.bytes == 0 then redis.call('PEXPIRE', lk(a), TTL) end
  b.last, b.held, b.hbytes, b.bytes = id, b.held + 1, b.hbytes + size, b.bytes + size
  totals.held, totals.all, totals.moved = held0 - (hbytes0 - b.hbytes), allBytes(), true
  store(a, b, tagField, id)
  return id, held, route(a, eventFrame(a, id, stamp, event))
end

-- Relay sessions (see protocol.ts): the lease of the instance that carries a session's media.
local function rk(sid) return key('${KIND.lease}', sid) end
local function ownedKey(instance) return key('${KIND.owned}', instance) end
local function isRelay(sid) return redis.call('HGET', sk(sid), 'mode') == 'relay' end
local function isPublisher(record) return record ~= nil and record ~= false and string.find(record, '"role":"publisher"', 1, true) ~= nil end
local function isRelayPeer(record) return record ~= nil and record ~= false and string.find(record, '"r":1', 1, true) ~= nil end
${SEES_LUA}

-- Tells the owner of sid's media (op, peer id, JSON: see RelayFrame); nothing when it has none: the
-- next one rebuilds the session from what is here.
local function toOwner(sid, op, pid, json)
  local lease = redis.call('HMGET', rk(sid), 'owner', 'token')
  if not lease[1] then return end
  local msg = relayFrame(op, sid, lease[2], pid, json)
  if lease[1] == SELF then OUT[#OUT + 1] = msg else redis.call('PUBLISH', ck(lease[1]), msg) end
end

-- The live instance with the most relay room left, other than except (and not draining), of those with
-- as much the one with the fewest sessions; nil when none has any. An instance that stopped publishing
-- its load is dead: its entry goes.
local function freest(except)
  local best, bestFree, bestSessions = nil, 0, 0
  local all = redis.call('HGETALL', LOAD)
  for i = 1, #all, 2 do
    local id = all[i]
    local good, load = pcall(cjson.decode, all[i + 1])
    if not good or type(load) ~= 'table' or tonumber(load['until']) == nil or tonumber(load['until']) < NOW then
      redis.call('HDEL', LOAD, id)
    elseif id ~= except and load.draining == 0 then
      local free, sessions = load.capacity - load.peers, load.sessions or 0
      if free > 0 and (best == nil or free > bestFree or (free == bestFree and (sessions < bestSessions or (sessions == bestSessions and id < best)))) then
        best, bestFree, bestSessions = id, free, sessions
      end
    end
  end
  return best
end

-- Whether instance has room for one more relay peer; an instance without a live entry is not refused
-- here (its sessions move once its lease expires).
local function hasRoom(instance)
  local raw = redis.call('HGET', LOAD, instance)
  if not raw then return true end
  local good, load = pcall(cjson.decode, raw)
  return not good or type(load) ~= 'table' or load.peers < load.capacity
end

-- Counts n more peers (and sessions more sessions) on instance until it publishes its load again:
-- placements that come before that see the room they took.
local function reserve(instance, n, sessions)
  local raw = redis.call('HGET', LOAD, instance)
  if not raw or (n == 0 and sessions == 0) then return end
  local good, load = pcall(cjson.decode, raw)
  if not good or type(load) ~= 'table' then return end
  load.peers, load.sessions = load.peers + n, (load.sessions or 0) + sessions
  redis.call('HSET', LOAD, instance, cjson.encode(load))
end

-- What an owner rebuilds a relay session from: its peers, their roles, whether a stream is held (JSON).
local function relayPeers(sid)
  local peers = {}
  local all = redis.call('HGETALL', pk(sid))
  for i = 1, #all, 2 do
    peers[#peers + 1] = {id = all[i], role = isPublisher(all[i + 1]) and 'publisher' or 'viewer', streaming = redis.call('EXISTS', hk(addr(sid, all[i]))) == 1}
  end
  return peers
end

-- Gives sid's media to instance under a new fencing token, and tells it (an own frame with why and
-- the peers). The counter never expires: a token is never given twice.
local function lease(sid, instance, leaseMs, why)
  local old = redis.call('HGET', rk(sid), 'owner')
  if old then redis.call('SREM', ownedKey(old), sid) end
  local token = redis.call('INCR', FENCE)
  redis.call('DEL', rk(sid))
  redis.call('HSET', rk(sid), 'owner', instance, 'token', token, 'until', NOW + leaseMs)
  redis.call('PEXPIRE', rk(sid), TTL)
  redis.call('ZADD', LEASES, NOW + leaseMs, sid)
  redis.call('PEXPIRE', LEASES, TTL)
  redis.call('SADD', ownedKey(instance), sid)
  redis.call('PEXPIRE', ownedKey(instance), TTL)
  local peers = relayPeers(sid)
  local json = #peers == 0 and '{"why":"' .. why .. '","peers":[]}' or cjson.encode({why = why, peers = peers})
  toOwner(sid, 'own', '', json)
  reserve(instance, #peers, 1)
  return token
end

local function dropLease(sid)
  local owner = redis.call('HGET', rk(sid), 'owner')
  if owner then redis.call('SREM', ownedKey(owner), sid) end
  redis.call('DEL', rk(sid))
  redis.call('ZREM', LEASES, sid)
end

local function deleteSession(sid)
  local by = redis.call('HGET', sk(sid), 'by')
  if by then hold('s' .. by, -1) end
  local all = redis.call('HGETALL', pk(sid))
  for i = 1, #all, 2 do
    local pid = all[i]
    local origin = originOf(all[i + 1])
    if origin then hold('p' .. origin, -1) end
    if origin and isRelayPeer(all[i + 1]) then hold('r' .. origin, -1) end
    local a = addr(sid, pid)
    redis.call('ZREM', DL, a)
    forget(a)
    redis.call('DEL', mk(a), lk(a), hk(a))
  end
  if isRelay(sid) then
    toOwner(sid, 'closed', '', '')
    dropLease(sid)
  end
  redis.call('DEL', sk(sid), pk(sid), ik(sid))
  redis.call('ZREM', DL, idleMember(sid))
  redis.call('SREM', SESSIONS, sid)
end

-- Removes a registered peer: its stream closes, the others get peer-left, the last one out ends the
-- session (an admin session waits idleMs instead). left is the peer-left event, T its topic, B the bounds.
-- Returns 'left', 'idle' or 'closed'.
local function removePeer(sid, pid, left, T, B)
  local a = addr(sid, pid)
  local record = redis.call('HGET', pk(sid), pid)
  local origin = originOf(record)
  if origin then hold('p' .. origin, -1) end
  if origin and isRelayPeer(record) then hold('r' .. origin, -1) end
  local relay = isRelay(sid)
  if relay then toOwner(sid, 'left', pid, '') end
  redis.call('HDEL', pk(sid), pid)
  redis.call('ZREM', DL, a)
  route(a, closeFrame(a, 0, '', ''))
  forget(a)
  redis.call('DEL', mk(a), lk(a), hk(a))
  if redis.call('HLEN', pk(sid)) == 0 then
    local idle = redis.call('HGET', sk(sid), 'idleMs')
    if idle then
      redis.call('ZADD', DL, NOW + tonumber(idle), idleMember(sid))
      touchSession(sid)
      return 'idle'
    end
    deleteSession(sid)
    return 'closed'
  end
  if not seenByOthers(relay, isPublisher(record)) then return 'left' end
  for _, other in ipairs(redis.call('HKEYS', pk(sid))) do append(addr(sid, other), left, false, '-1', T, B) end
  return 'left'
end
`;

/**
 * What an admission check decides on, as one string: the session's creation (none: it is new),
 * whether it is empty (the first peer in is the publisher), which other peer is a publisher, and the
 * peer's current registration; and, second, that other publisher's id. The registration is written
 * only if the string is unchanged; other peers joining meanwhile change nothing. The fields are joined
 * with SEP, which no id contains, and the registration (any JSON) comes last: one string, one reading.
 */
const FINGERPRINT = `
local function fingerprint(sid, pid)
  local created = redis.call('HGET', sk(sid), 'createdAt')
  if not created then return '', '' end
  local all = redis.call('HGETALL', pk(sid))
  local publisher = ''
  for i = 1, #all, 2 do
    if all[i] ~= pid and string.find(all[i + 1], '"role":"publisher"', 1, true) then
      publisher = all[i]
      break
    end
  end
  local empty = #all == 0 and '1' or '0'
  return created .. SEP .. empty .. SEP .. publisher .. SEP .. (redis.call('HGET', pk(sid), pid) or ''), publisher
end
`;

/**
 * One script: its body (run after PRELUDE's begin), its source for EVALSHA, and what `run` returns
 * for it: its reply, decoded into named fields.
 */
export interface Script<R = unknown> {
  readonly name: string;
  readonly body: string;
  /** The whole script for SCRIPT LOAD and EVALSHA: the prelude, then begin, then the body. */
  readonly source: string;
  decode(reply: unknown): R;
}

const rawScript = <R>(name: string, body: string, decode: (reply: unknown) => R): Script<R> => ({
  name,
  body,
  // The prelude declares a local ARGV (its begin sets it): the script's own is taken before that.
  source: `local CALLED_WITH = ARGV\n${PRELUDE}\nbegin(CALLED_WITH)\nreturn finish((function()\n${body}\nend)())`,
  decode,
});

const script = <R>(name: string, body: string, decode: (reply: Reply) => R): Script<R> => rawScript(name, body, (reply) => decode(Reply.of(reply, name)));

/** A script's refusal: the error code of a check that failed, as the session rules name it. */
export type Refused<C extends string> = C extends string ? { readonly status: C } : never;

/** What an admission check needs: ARGV[5] sessionId, [6] peerId, [7] the key of the client's address ('' when unknown). */
const ADMISSION = `
local sid, pid, origin = ARGV[5], ARGV[6], ARGV[7]
local sessions = redis.call('SCARD', SESSIONS)
local ownSessions = origin ~= '' and holding('s' .. origin) or 0
local ownPeers = origin ~= '' and holding('p' .. origin) or 0
if redis.call('EXISTS', sk(sid)) == 0 then return {0, sessions, ownSessions, ownPeers} end
local meta = redis.call('HMGET', sk(sid), 'idleMs', 'inv')
local seen, publisher = fingerprint(sid, pid)
return {1, sessions, ownSessions, ownPeers, seen, redis.call('HLEN', pk(sid)), meta[1] and 1 or 0, meta[2] and 1 or 0,
  publisher, redis.call('HGET', pk(sid), pid) or '', redis.call('HGET', ik(sid), pid) or '', redis.call('HGET', sk(sid), 'mode') or 'mesh'}
`;

/** What the admission check sees: the store's counts and, when the session exists, what it decides on. */
export interface AdmissionReply {
  sessions: number;
  /** What the client's address holds (0 when it is not known). */
  ownSessions: number;
  ownPeers: number;
  session?: {
    /** The fingerprint that the registration is written under (see FINGERPRINT). */
    fingerprint: string;
    peers: number;
    managed: boolean;
    /** Whether only invited ids may register. */
    inviteOnly: boolean;
    /** Another peer that is a publisher, if any. */
    publisher: string | undefined;
    /** The peer's current registration (JSON, see StoredPeer), if it is registered. */
    record: string | undefined;
    /** Its invite (JSON), if it has one. */
    invite: string | undefined;
    mode: SessionMode;
  };
}

const decodeAdmission = (r: Reply): AdmissionReply => {
  const exists = r.flag();
  const [sessions, ownSessions, ownPeers] = [r.num(), r.num(), r.num()];
  if (!exists) return { sessions, ownSessions, ownPeers };
  const fingerprint = r.str();
  const peers = r.num();
  const [managed, inviteOnly] = [r.flag(), r.flag()];
  const publisher = r.str();
  const [record, invite] = [r.str(), r.str()];
  const mode = r.str() === 'relay' ? 'relay' : 'mesh';
  return {
    sessions,
    ownSessions,
    ownPeers,
    session: {
      fingerprint,
      peers,
      managed,
      inviteOnly,
      publisher: publisher === '' ? undefined : publisher,
      record: record === '' ? undefined : record,
      invite: invite === '' ? undefined : invite,
      mode,
    },
  };
};

/**
 * Registers or takes over, if what the admission check decided on is unchanged (FINGERPRINT), and if
 * the admission caps still let it in now (`caps`, built from ADMISSION_CAPS: other registrations may
 * have come since the check): ARGV[5] sessionId, [6] peerId, [7] the fingerprint seen, [8] credentials
 * JSON (an object), [9] peer timeout ms, [10] max sessions, [11] max peers per session, [12…14] the
 * new-peer notice's topic, [15…18] the event bounds, [19] the key of the client's address ('' when
 * unknown), [20] the sessions and [21] the registrations it may hold (0: no cap), [22] the new-peer event,
 * [23] the session's mode, and for a relay session: [24] the relay registrations an address may hold
 * (0: no cap), [25] the lease's lifetime (ms), [26] the peer's role. A new relay session is placed on the
 * instance with the most room ('relay_full' when none has any); a newcomer to one needs room on its owner
 * ('relay_full') and on its address ('relay_peers').
 */
const REGISTER = `
${capsLua()}
local sid, pid, seen, record = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local peerTimeout = tonumber(ARGV[9])
local T, B = topicAt(12), boundsAt(15)
local origin, joined = ARGV[19], ARGV[22]
local relay, maxRelayPerIp, leaseMs, role = ARGV[23] == 'relay', tonumber(ARGV[24]), tonumber(ARGV[25]), ARGV[26]
if fingerprint(sid, pid) ~= seen then return {'conflict'} end
local current = redis.call('HGET', pk(sid), pid)
local was = originOf(current)
local C = {exists = seen ~= '', registered = current ~= false, sessions = redis.call('SCARD', SESSIONS), peers = redis.call('HLEN', pk(sid)),
  ownSessions = origin ~= '' and holding('s' .. origin) or 0, ownPeers = origin ~= '' and holding('p' .. origin) or 0,
  holdsIt = current ~= false and was == origin, hasOrigin = origin ~= ''}
local L = {maxSessions = tonumber(ARGV[10]), maxPeersPerSession = tonumber(ARGV[11]), maxSessionsPerIp = tonumber(ARGV[20]), maxPeersPerIp = tonumber(ARGV[21])}
local cap = caps(C, L)
if cap >= 0 then return {'cap', cap} end
-- The relay's own caps, last: nothing refuses the registration once it holds its place.
local owner
if relay then
  if origin ~= '' and maxRelayPerIp > 0 and not C.holdsIt and holding('r' .. origin) >= maxRelayPerIp then return {'relay_peers'} end
  if seen == '' then
    owner = freest(nil)
    if not owner then return {'relay_full'} end
  else
    owner = redis.call('HGET', rk(sid), 'owner')
    if not current and owner and not hasRoom(owner) then return {'relay_full'} end
  end
end
local created = 0
if seen == '' then
  newSession(sid)
  redis.call('SADD', SESSIONS, sid)
  if origin ~= '' then
    redis.call('HSET', sk(sid), 'by', origin)
    hold('s' .. origin, 1)
  end
  if relay then
    redis.call('HSET', sk(sid), 'mode', 'relay')
    lease(sid, owner, leaseMs, 'placed')
  end
  created = 1
end
if relay and not current and owner then reserve(owner, 1, 0) end
local takeover = current and 1 or 0
-- Its place in the session: kept on takeover, the next one for a newcomer.
local place = current and string.match(current, '"n":(%d+)') or redis.call('HINCRBY', sk(sid), 'joins', 1)
local stored = string.sub(record, 1, -2) .. (record == '{}' and '' or ',') .. '"n":' .. place
redis.call('HSET', pk(sid), pid, stored .. (origin ~= '' and (',"o":"' .. origin .. '"') or '') .. (relay and ',"r":1' or '') .. '}')
-- A takeover moves the registration to the address that made it now.
if was ~= (origin ~= '' and origin or nil) then
  if was then hold('p' .. was, -1) end
  if origin ~= '' then hold('p' .. origin, 1) end
  if relay and was then hold('r' .. was, -1) end
end
if relay and origin ~= '' and (not current or was ~= origin) then hold('r' .. origin, 1) end
redis.call('ZREM', DL, idleMember(sid))
local a = addr(sid, pid)
local m = redis.call('HMGET', mk(a), 'last', 'gen')
local epoch = m[1] and (tonumber(m[1]) + ${EPOCH_STEP}) or ${FIRST_EPOCH}
local gen = (m[2] and tonumber(m[2]) or 0) + 1
route(a, closeFrame(a, gen, '', ''))
forget(a)
redis.call('DEL', mk(a), lk(a), hk(a))
redis.call('HSET', mk(a), 'epoch', epoch, 'last', epoch - 1, 'cursor', epoch - 1, 'gen', gen, 'first', epoch, 'held', 0, 'hbytes', 0, 'bytes', 0, 'home', SELF)
redis.call('PEXPIRE', mk(a), TTL)
redis.call('ZADD', DL, NOW + peerTimeout, a)
local others = {}
local all = redis.call('HGETALL', pk(sid))
for i = 1, #all, 2 do
  local other = all[i]
  if other ~= pid then
    if seenByOthers(relay, isPublisher(all[i + 1])) then others[#others + 1] = other end
    if seenByOthers(relay, role == 'publisher') then append(addr(sid, other), joined, false, '-1', T, B) end
  end
end
if relay then
  redis.call('PEXPIRE', rk(sid), TTL)
  toOwner(sid, 'joined', pid, role)
end
touchSession(sid)
keepCounts()
return {'ok', OUT, created, takeover, epoch - 1, others}
`;

export type RegisterReply =
  | Refused<'conflict' | 'relay_full' | 'relay_peers'>
  /** `cap`: the index in ADMISSION_CAPS of the cap that refused. */
  | { status: 'cap'; cap: number }
  | { status: 'ok'; out: string[]; created: boolean; takeover: boolean; lastEventId: number; others: string[] };

const decodeRegister = (r: Reply): RegisterReply => {
  const status = r.str();
  if (status === 'conflict' || status === 'relay_full' || status === 'relay_peers') return { status };
  if (status === 'cap') return { status, cap: r.num() };
  if (status !== 'ok') throw new Error(`register: unexpected status ${status}`);
  return { status, out: r.strings(), created: r.flag(), takeover: r.flag(), lastEventId: r.num(), others: r.strings() };
};

/**
 * Client messages, from one or more senders, in one step: the messages of a turn of an instance's loop
 * go to Redis in one call (see SendQueue), and each sender's are taken as if it had called alone, in
 * order. ARGV[5…8] the bounds, the same for every message of the instance; then one group per sender:
 * its sessionId, its peerId, '1' when its token is checked, the hash of the token it presented ('' for
 * none), its topic (three values), the stamp (ms accepted), the number of its messages, then for each
 * message five values: its target ('' for every other peer), its event JSON, '1' when the session rules
 * refuse it once the sender is let in, '1' for a media signal, and the message as `switchboard`'s owner
 * reads it ({ type, payload }; '' when switchboard cannot take it).
 *
 * A sender is let in once for its group (in this order: the session and the sender exist, the token is
 * the sender's); then each of its messages goes to its targets with `deliverMessage`: it is refused when
 * the session rules refused it already (the reason stays in TypeScript); in a relay session a message to
 * `switchboard` goes to the owner of its media (refused when `switchboard` cannot take it) and a media
 * signal to anyone else is refused; else its target must exist and have room. A broadcast reaches every
 * other peer or none.
 *
 * Returns 'ok', OUT, then for each group its sender's refusal, or 'ok', the number of its messages and
 * each message's result.
 */
const SEND = `
local B = boundsAt(5)

-- One message's result, appended to R: 'refused' | 'server' | 'server_refused' | 'media_to_server' |
-- 'target_not_found', target | 'queue_full', target, held, why, bytes | 'ok', n, then n times target, id,
-- receivers. S is its sender (sid, pid, topic T, relay: whether the session is a relay session); media is
-- '1' for a media signal; server is the message as the owner of the session's media reads it ('' when
-- switchboard cannot take it).
local function deliverMessage(R, S, target, event, stamp, refused, media, server)
  local function put(...)
    for _, v in ipairs({...}) do R[#R + 1] = v end
  end
  if refused == '1' then return put('refused') end
  local sid = S.sid
  if S.relay then
    if target == '${SERVER_PEER_ID}' then
      if server == '' then return put('server_refused') end
      toOwner(sid, 'message', S.pid, server)
      return put('server')
    end
    if media == '1' then return put('media_to_server') end
  end
  if target ~= '' then
    -- A registered peer has a mailbox, made and deleted with its record: none, no such peer.
    local id, held, receivers, bytes = append(addr(sid, target), event, true, stamp, S.T, B)
    if id == nil then return put('target_not_found', target) end
    if id == false then return put('queue_full', target, held, receivers, bytes) end
    return put('ok', 1, target, id, receivers)
  end
  local targets = {}
  for _, other in ipairs(redis.call('HKEYS', pk(sid))) do
    if other ~= S.pid then
      local b = box(addr(sid, other))
      local why = b and refusal(b, #event, B)
      if why then return put('queue_full', other, b.held, why, b.hbytes) end
      targets[#targets + 1] = other
    end
  end
  if total('held') + #event * #targets > B.totalBytes then return put('queue_full', '', 0, 'total', total('held')) end
  local appended = {}
  for _, other in ipairs(targets) do
    local id, held, receivers = append(addr(sid, other), event, true, stamp, S.T, B)
    if id then
      appended[#appended + 1] = other
      appended[#appended + 1] = id
      appended[#appended + 1] = receivers
    end
  end
  put('ok', #appended / 3)
  for _, v in ipairs(appended) do R[#R + 1] = v end
end

-- The group at ARGV[g]: its sender let in, then its n messages from ARGV[g + 9].
local function sendGroup(R, g, n)
  local sid, pid, checked, hash = ARGV[g], ARGV[g + 1], ARGV[g + 2], ARGV[g + 3]
  -- The sender's record: it exists only in a session that exists, and it says whether the session is a
  -- relay session ("r":1, see register); neither changes while the script runs.
  local sender = redis.call('HGET', pk(sid), pid)
  if not sender then
    R[#R + 1] = redis.call('EXISTS', sk(sid)) == 0 and 'session_not_found' or 'peer_not_found'
    return
  end
  if checked == '1' then
    if hash == '' then R[#R + 1] = 'unauthorized' return end
    -- Hashes compared, not tokens: the time this takes says nothing about the token.
    if string.match(sender, '"tokenHash":"([^"]*)"') ~= hash then R[#R + 1] = 'forbidden' return end
  end
  local S = {sid = sid, pid = pid, T = topicAt(g + 4), relay = isRelayPeer(sender)}
  local stamp = ARGV[g + 7]
  R[#R + 1] = 'ok'
  R[#R + 1] = n
  for i = g + 9, g + 4 + 5 * n, 5 do deliverMessage(R, S, ARGV[i], ARGV[i + 1], stamp, ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]) end
end

local R = {'ok', OUT}
local g = 9
while g <= #ARGV do
  local n = tonumber(ARGV[g + 8])
  sendGroup(R, g, n)
  g = g + 9 + 5 * n
end
return R
`;

/** One event a message became: its target, its id there, and who took it (-1: this instance, else the number of receivers). */
export interface Appended {
  target: string;
  id: number;
  receivers: number;
}

/** What became of one message once its sender was let in. */
export type MessageReply =
  | Refused<'refused' | 'server_refused' | 'media_to_server'>
  /** Sent to the owner of the relay session's media. */
  | { readonly status: 'server' }
  | { status: 'target_not_found'; target: string }
  | { status: 'queue_full'; target: string; held: number; why: 'held' | 'bytes' | 'total'; bytes: number }
  | { status: 'ok'; appended: Appended[] };

/** One sender's part of a send: its refusal, or what became of each of its messages. */
export type SenderReply = Refused<'session_not_found' | 'peer_not_found' | 'unauthorized' | 'forbidden'> | { status: 'ok'; messages: MessageReply[] };

/** The frames for this instance, then each sender's part, in the order of the groups. */
export interface SendReply {
  out: string[];
  senders: SenderReply[];
}

const decodeMessage = (r: Reply): MessageReply => {
  const status = r.str();
  switch (status) {
    case 'refused':
    case 'server':
    case 'server_refused':
    case 'media_to_server':
      return { status };
    case 'target_not_found':
      return { status, target: r.str() };
    case 'queue_full':
      return { status, target: r.str(), held: r.num(), why: r.str() as 'held' | 'bytes' | 'total', bytes: r.num() };
    case 'ok': {
      const appended: Appended[] = [];
      for (let n = r.num(); n > 0; n--) appended.push({ target: r.str(), id: r.num(), receivers: r.num() });
      return { status, appended };
    }
    default:
      throw new Error(`send: unexpected message status ${status}`);
  }
};

const decodeSender = (r: Reply): SenderReply => {
  const status = r.str();
  switch (status) {
    case 'session_not_found':
    case 'peer_not_found':
    case 'unauthorized':
    case 'forbidden':
      return { status };
    case 'ok': {
      const messages: MessageReply[] = [];
      for (let n = r.num(); n > 0; n--) messages.push(decodeMessage(r));
      return { status, messages };
    }
    default:
      throw new Error(`send: unexpected status ${status}`);
  }
};

const decodeSend = (r: Reply): SendReply => {
  const status = r.str();
  if (status !== 'ok') throw new Error(`send: unexpected status ${status}`);
  const out = r.strings();
  const senders: SenderReply[] = [];
  while (!r.done) senders.push(decodeSender(r));
  return { out, senders };
};

/**
 * Attaches a stream on this instance: ARGV[5] sessionId, [6] peerId, [7] Last-Event-ID ('' for none),
 * [8] the peer's deadline while attached. Returns 'ok', OUT, gen, cursor, then the events after the cursor.
 */
const ATTACH = `
${RESUME_LUA}
local sid, pid, resume, deadline = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
if redis.call('EXISTS', sk(sid)) == 0 then return {'session_not_found'} end
if redis.call('HEXISTS', pk(sid), pid) == 0 then return {'peer_not_found'} end
local a = addr(sid, pid)
local m = redis.call('HMGET', mk(a), 'epoch', 'gen')
local b = box(a)
if not b then return {'peer_not_found'} end
local epoch, gen = tonumber(m[1]), tonumber(m[2])
if resume ~= '' then
  local from = tonumber(resume)
  local why = resumeRefusal(from, {epoch = epoch, first = b.first, last = b.last})
  if why then return {why} end
  b.cursor = from
end
local cursor = b.cursor
-- What is held after the cursor, counted again: a resume moves it back.
local events = redis.call('XRANGE', lk(a), '(0-' .. cursor, '+')
local hbytes = 0
for _, row in ipairs(events) do hbytes = hbytes + #row[2][2] end
count(hbytes - b.hbytes, 0)
b.held, b.hbytes = #events, hbytes
store(a, b)
gen = gen + 1
route(a, closeFrame(a, gen, '', ''))
redis.call('HSET', mk(a), 'gen', gen, 'home', SELF)
redis.call('SET', hk(a), SELF, 'PX', TTL)
redis.call('ZADD', DL, deadline, a)
redis.call('PEXPIRE', mk(a), TTL)
redis.call('PEXPIRE', lk(a), TTL)
-- The owner of a relay session's media can reach the peer now: its connection is made, its offer sent.
if isRelay(sid) then toOwner(sid, 'reachable', pid, '') end
touchSession(sid)
keepCounts()
return {'ok', OUT, gen, cursor, events}
`;

export type AttachReply =
  | Refused<'session_not_found' | 'peer_not_found' | 'superseded' | 'resume_gap'>
  | { status: 'ok'; out: string[]; gen: number; cursor: number; events: LoggedEvent[] };

const decodeAttach = (r: Reply): AttachReply => {
  const status = r.str();
  if (status === 'session_not_found' || status === 'peer_not_found' || status === 'superseded' || status === 'resume_gap') return { status };
  if (status !== 'ok') throw new Error(`attach: unexpected status ${status}`);
  return { status, out: r.strings(), gen: r.num(), cursor: r.num(), events: decodeLog(r.list()) };
};

/**
 * The stream of attach <gen> ended on this instance: ARGV[5] a, [6] gen, [7] the peer's deadline now
 * (its timeout starts). Nothing when another attach or a takeover came since.
 */
const DETACH = `
local a, gen, deadline = ARGV[5], ARGV[6], tonumber(ARGV[7])
if redis.call('HGET', mk(a), 'gen') ~= gen then return 0 end
if redis.call('GET', hk(a)) == SELF then redis.call('DEL', hk(a)) end
redis.call('ZADD', DL, deadline, a)
return 1
`;

/**
 * The holder's refresh of some of its streams and their cursors, in one step: ARGV[5] the deadline of
 * each while attached (0: only the cursors are stored), [6] events kept for resume, [7] the cluster's
 * byte budget, then for each stream three values: a, the attach's gen, its cursor. Returns each one's
 * last id, in order, or -1 when that attach is over (the peer left, was taken over or attached
 * elsewhere): the holder then ends its stream.
 */
const KEEPALIVE = `
local deadline, retain, budget = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local heldFreed, allFreed = 0, 0
local function keep(a, gen, cursor)
  local b = box(a, 'gen')
  if not b or b.field ~= gen then return -1 end
  if cursor >= b.last and b.cursor < b.last then
    -- Every event in the log is written (the usual case): what was held was all of it, as counted.
    heldFreed = heldFreed + b.hbytes
    b.held, b.hbytes = 0, 0
  elseif cursor > b.cursor then
    local written = 0
    local rows = redis.call('XRANGE', lk(a), '(0-' .. b.cursor, '0-' .. cursor)
    for _, row in ipairs(rows) do written = written + #row[2][2] end
    b.held, b.hbytes = math.max(0, b.held - #rows), b.hbytes - written
    heldFreed = heldFreed + written
  end
  b.cursor = cursor
  -- The newest id per topic tag matters only while that event is held: past many, the written ones go,
  -- looked for at a refresh (a mailbox gains a tag per sender and per server notice: a few between two).
  if deadline > 0 and redis.call('HLEN', mk(a)) > 128 then
    local fields = redis.call('HGETALL', mk(a))
    for i = 1, #fields, 2 do
      local name = fields[i]
      if string.sub(name, 1, 1) == 't' and #name > 1 and tonumber(fields[i + 1]) <= cursor then redis.call('HDEL', mk(a), name) end
    end
  end
  -- Past the cluster's budget, the events kept for resume go first: each holder drops its peers' here.
  local from = total('all') - allFreed > budget and cursor + 1 or cursor - retain + 1
  if from > b.first then
    local freed = 0
    for _, row in ipairs(redis.call('XRANGE', lk(a), '-', '(0-' .. from)) do freed = freed + #row[2][2] end
    redis.call('XTRIM', lk(a), 'MINID', '0-' .. from)
    b.bytes, b.first = b.bytes - freed, from
    allFreed = allFreed + freed
  end
  store(a, b)
  if deadline > 0 then
    redis.call('SET', hk(a), SELF, 'PX', TTL)
    redis.call('ZADD', DL, deadline, a)
    redis.call('PEXPIRE', mk(a), TTL)
    redis.call('PEXPIRE', lk(a), TTL)
    touchSession(string.match(a, '^(.-)' .. SEP))
  end
  return b.last
end
local R = {}
for i = 8, #ARGV, 3 do R[#R + 1] = keep(ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])) end
-- The cluster's byte counts move once for all of them.
if heldFreed ~= 0 or allFreed ~= 0 then count(-heldFreed, -allFreed) end
if deadline > 0 then keepCounts() end
return R
`;

/** Each stream's last event id, in the order given, or undefined when its attach is over. */
const decodeKeepalive = (reply: unknown): (number | undefined)[] => (reply as number[]).map((last) => (last === -1 ? undefined : Number(last)));

/**
 * Claims one due deadline (ARGV[5], the member) with ZREM, so that exactly one instance acts on it: an
 * expired peer is removed (the others get [13], the peer-left event: [6…8] its topic, [9…12] the event
 * bounds), an idle admin session without peers ends.
 */
const EXPIRE = `
local member = ARGV[5]
local score = redis.call('ZSCORE', DL, member)
if not score or tonumber(score) > NOW then return {'skip'} end
redis.call('ZREM', DL, member)
if string.sub(member, 1, 1) == SEP then
  local sid = string.sub(member, 2)
  if redis.call('EXISTS', sk(sid)) == 0 or redis.call('HLEN', pk(sid)) > 0 then return {'skip'} end
  deleteSession(sid)
  return {'idle', sid}
end
local sid, pid = string.match(member, '^(.-)' .. SEP .. '(.*)$')
if not sid or redis.call('HEXISTS', pk(sid), pid) == 0 then return {'skip'} end
return {'timeout', OUT, sid, pid, removePeer(sid, pid, ARGV[13], topicAt(6), boundsAt(9))}
`;

/** What removing a peer did to its session: others remain, it waits for its idle time, or it ended. */
export type Outcome = 'left' | 'idle' | 'closed';

export type ExpireReply = Refused<'skip'> | { status: 'idle'; sessionId: string } | { status: 'timeout'; out: string[]; sessionId: string; peerId: string; outcome: Outcome };

const decodeExpire = (r: Reply): ExpireReply => {
  const status = r.str();
  if (status === 'skip') return { status };
  if (status === 'idle') return { status, sessionId: r.str() };
  if (status !== 'timeout') throw new Error(`expire: unexpected status ${status}`);
  return { status, out: r.strings(), sessionId: r.str(), peerId: r.str(), outcome: r.str() as Outcome };
};

/** The peer leaves: ARGV[5] sessionId, [6] peerId, [7…9] the peer-left notice's topic, [10…13] the event bounds, [14] the peer-left event. */
const LEAVE = `
local sid, pid = ARGV[5], ARGV[6]
if redis.call('EXISTS', sk(sid)) == 0 then return {'session_not_found'} end
if redis.call('HEXISTS', pk(sid), pid) == 0 then return {'peer_not_found'} end
return {'ok', OUT, removePeer(sid, pid, ARGV[14], topicAt(7), boundsAt(10))}
`;

export type LeaveReply = Refused<'session_not_found' | 'peer_not_found'> | { status: 'ok'; out: string[]; outcome: Outcome };

const decodeLeave = (r: Reply): LeaveReply => {
  const status = r.str();
  if (status === 'session_not_found' || status === 'peer_not_found') return { status };
  if (status !== 'ok') throw new Error(`leave: unexpected status ${status}`);
  return { status, out: r.strings(), outcome: r.str() as Outcome };
};

/** Closes a session: ARGV[5] sessionId, [6] the final event. Every stream gets it, then ends. */
const CLOSE_SESSION = `
local sid, final = ARGV[5], ARGV[6]
if redis.call('EXISTS', sk(sid)) == 0 then return {'session_not_found'} end
for _, pid in ipairs(redis.call('HKEYS', pk(sid))) do
  local a = addr(sid, pid)
  local last = redis.call('HGET', mk(a), 'last')
  if last then route(a, closeFrame(a, 0, tonumber(last) + 1, final)) end
end
deleteSession(sid)
return {'ok', OUT}
`;

export type CloseSessionReply = Refused<'session_not_found'> | { status: 'ok'; out: string[] };

const decodeCloseSession = (r: Reply): CloseSessionReply => {
  const status = r.str();
  if (status === 'session_not_found') return { status };
  if (status !== 'ok') throw new Error(`closeSession: unexpected status ${status}`);
  return { status, out: r.strings() };
};

/**
 * An admin session: ARGV[5] sessionId, [6] idle ms, [7] max sessions, [8] '1' with an allow-list,
 * [9] its mode, [10] the lease's lifetime (ms) for a relay session, then peerId, invite JSON pairs. A
 * relay session is placed on the instance with the most room ('relay_full' when none has any).
 */
const CREATE_SESSION = `
local sid, idle, maxSessions = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('EXISTS', sk(sid)) == 1 then return {'session_exists'} end
if redis.call('SCARD', SESSIONS) >= maxSessions then return {'too_many_sessions'} end
local owner = ARGV[9] == 'relay' and freest(nil)
if ARGV[9] == 'relay' and not owner then return {'relay_full'} end
newSession(sid)
redis.call('HSET', sk(sid), 'idleMs', idle, 'home', SELF)
if ARGV[8] == '1' then redis.call('HSET', sk(sid), 'inv', 1) end
if owner then
  redis.call('HSET', sk(sid), 'mode', 'relay')
  lease(sid, owner, tonumber(ARGV[10]), 'placed')
end
for i = 11, #ARGV, 2 do redis.call('HSET', ik(sid), ARGV[i], ARGV[i + 1]) end
redis.call('SADD', SESSIONS, sid)
redis.call('ZADD', DL, NOW + idle, idleMember(sid))
touchSession(sid)
return {'ok', OUT}
`;

export type CreateSessionReply = Refused<'session_exists' | 'too_many_sessions' | 'relay_full'> | { status: 'ok'; out: string[] };

const decodeCreateSession = (r: Reply): CreateSessionReply => {
  const status = r.str();
  if (status === 'session_exists' || status === 'too_many_sessions' || status === 'relay_full') return { status };
  if (status !== 'ok') throw new Error(`createSession: unexpected status ${status}`);
  return { status, out: r.strings() };
};

/** ARGV[5] sessionId, [6] peerId: the peer's credentials JSON. */
const PEER_AUTH = `
local sid, pid = ARGV[5], ARGV[6]
if redis.call('EXISTS', sk(sid)) == 0 then return {'session_not_found'} end
local record = redis.call('HGET', pk(sid), pid)
if not record then return {'peer_not_found'} end
return {'ok', record}
`;

export type PeerAuthReply = Refused<'session_not_found' | 'peer_not_found'> | { status: 'ok'; record: string };

const decodePeerAuth = (r: Reply): PeerAuthReply => {
  const status = r.str();
  if (status === 'session_not_found' || status === 'peer_not_found') return { status };
  if (status !== 'ok') throw new Error(`peerAuth: unexpected status ${status}`);
  return { status, record: r.str() };
};

/** ARGV[5] sessionId: peerId, credentials JSON pairs. */
const SESSION_AUTHS = `
local sid = ARGV[5]
if redis.call('EXISTS', sk(sid)) == 0 then return {'session_not_found'} end
return {'ok', redis.call('HGETALL', pk(sid))}
`;

export type SessionAuthsReply = Refused<'session_not_found'> | { status: 'ok'; records: { id: string; record: string }[] };

/** A flat HGETALL answer as field → value pairs. */
const pairs = (all: string[]): [string, string][] => {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < all.length; i += 2) out.push([all[i] as string, all[i + 1] as string]);
  return out;
};

const decodeSessionAuths = (r: Reply): SessionAuthsReply => {
  const status = r.str();
  if (status === 'session_not_found') return { status };
  if (status !== 'ok') throw new Error(`sessionAuths: unexpected status ${status}`);
  return { status, records: pairs(r.strings()).map(([id, record]) => ({ id, record })) };
};

/** ARGV[5] sessionId: createdAt, idleMs, inv, peers (id, credentials, streaming 0/1 triples), invites (pairs), order. */
const SNAPSHOT = `
local sid = ARGV[5]
if redis.call('EXISTS', sk(sid)) == 0 then return {'session_not_found'} end
local meta = redis.call('HMGET', sk(sid), 'createdAt', 'idleMs', 'inv', 'order', 'mode')
local peers = {}
local all = redis.call('HGETALL', pk(sid))
for i = 1, #all, 2 do
  peers[#peers + 1] = all[i]
  peers[#peers + 1] = all[i + 1]
  peers[#peers + 1] = redis.call('EXISTS', hk(addr(sid, all[i])))
end
return {'ok', meta[1], meta[2], meta[3], peers, redis.call('HGETALL', ik(sid)), meta[4] or '', meta[5] or 'mesh'}
`;

export type SnapshotReply =
  | Refused<'session_not_found'>
  | {
      status: 'ok';
      createdAt: number;
      managed: boolean;
      inviteOnly: boolean;
      peers: { id: string; record: string; streaming: boolean }[];
      /** peerId → invite JSON. */
      invites: [string, string][];
      /** Its place among the sessions created (P/created): orders those created in one millisecond. */
      order: number;
      mode: SessionMode;
    };

const decodeSnapshot = (r: Reply): SnapshotReply => {
  const status = r.str();
  if (status === 'session_not_found') return { status };
  if (status !== 'ok') throw new Error(`snapshot: unexpected status ${status}`);
  const createdAt = r.num();
  const managed = r.maybeStr() !== undefined;
  const inviteOnly = r.maybeStr() !== undefined;
  const triples = r.list();
  const peers: { id: string; record: string; streaming: boolean }[] = [];
  for (let i = 0; i + 2 < triples.length; i += 3) peers.push({ id: triples[i] as string, record: triples[i + 1] as string, streaming: triples[i + 2] === 1 });
  const invites = pairs(r.strings());
  // A session written before the counter existed has no order: it sorts first among its millisecond.
  const order = r.str();
  const mode: SessionMode = r.str() === 'relay' ? 'relay' : 'mesh';
  return { status, createdAt, managed, inviteOnly, peers, invites, order: order === '' ? 0 : Number(order), mode };
};

/**
 * The cluster's sessions, peers and event bytes, then this instance's, for the gauges. A peer is on the
 * instance that holds its stream or, while it has none, on the one its registration or its last stream
 * went through (its mailbox's "home"): each peer counts on exactly one instance. A session is on every
 * instance that one of its peers is on; an admin session without peers, on the one that created it.
 * Reads every registration: instances run it at most every few seconds, when scraped.
 */
const COUNTS = `
local sessions = redis.call('SMEMBERS', SESSIONS)
local peers, mySessions, myPeers, myBytes = 0, 0, 0, 0
for _, sid in ipairs(sessions) do
  local ids = redis.call('HKEYS', pk(sid))
  peers = peers + #ids
  local here = #ids == 0 and redis.call('HGET', sk(sid), 'home') == SELF
  for _, pid in ipairs(ids) do
    local m = redis.call('HMGET', mk(addr(sid, pid)), 'home', 'bytes')
    if m[1] == SELF then
      myPeers, myBytes, here = myPeers + 1, myBytes + tonumber(m[2] or '0'), true
    end
  end
  if here then mySessions = mySessions + 1 end
end
return {#sessions, peers, total('all'), mySessions, myPeers, myBytes}
`;

export interface Counts {
  sessions: number;
  peers: number;
  eventBytes: number;
}

/** The cluster's counts, and this instance's share of them. */
export interface CountsReply {
  cluster: Counts;
  instance: Counts;
}

/**
 * An event from `switchboard` to a peer of a relay session, if this instance still owns the session's
 * media under the token it holds: ARGV[5] sessionId, [6] peerId, [7] its token, [8] the event,
 * [9…11] its topic, [12…15] the event bounds. 'fenced' when the lease is another's now: a stale owner
 * writes nothing.
 */
const SERVER_SEND = `
local sid, pid, token, event = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local lease = redis.call('HMGET', rk(sid), 'owner', 'token')
if lease[1] ~= SELF or lease[2] ~= token then return {'fenced'} end
if redis.call('HEXISTS', pk(sid), pid) == 0 then return {'peer_not_found'} end
append(addr(sid, pid), event, false, '-1', topicAt(9), boundsAt(12))
return {'ok', OUT}
`;

export type ServerSendReply = Refused<'fenced' | 'peer_not_found'> | { status: 'ok'; out: string[] };

const decodeServerSend = (r: Reply): ServerSendReply => {
  const status = r.str();
  if (status === 'fenced' || status === 'peer_not_found') return { status };
  if (status !== 'ok') throw new Error(`serverSend: unexpected status ${status}`);
  return { status, out: r.strings() };
};

/**
 * The owner's renewal: every lease this instance holds lasts ARGV[5] ms more, and its load is published
 * (the peers of its sessions counted here; [6] capacity, [7] packets/s, [8] bytes/s forwarded, [9] '1'
 * while it drains). Returns session id, token pairs: what it owns. A lease that is another's is dropped
 * from its set, and so missing from the answer.
 */
const RENEW_LEASES = `
local leaseMs = tonumber(ARGV[5])
local mine = ownedKey(SELF)
local owned, peers = {}, 0
for _, sid in ipairs(redis.call('SMEMBERS', mine)) do
  local lease = redis.call('HMGET', rk(sid), 'owner', 'token')
  if lease[1] ~= SELF then
    redis.call('SREM', mine, sid)
  else
    redis.call('HSET', rk(sid), 'until', NOW + leaseMs)
    redis.call('PEXPIRE', rk(sid), TTL)
    redis.call('ZADD', LEASES, NOW + leaseMs, sid)
    owned[#owned + 1] = sid
    owned[#owned + 1] = lease[2]
    peers = peers + redis.call('HLEN', pk(sid))
  end
end
redis.call('PEXPIRE', mine, TTL)
redis.call('PEXPIRE', LEASES, TTL)
redis.call('HSET', LOAD, SELF, cjson.encode({peers = peers, sessions = #owned / 2, capacity = tonumber(ARGV[6]), pps = tonumber(ARGV[7]), bps = tonumber(ARGV[8]), ['until'] = NOW + leaseMs, draining = tonumber(ARGV[9])}))
redis.call('PEXPIRE', LOAD, TTL)
return owned
`;

/** Session id → token, of the leases an instance holds. */
const decodeOwned = (r: Reply): Map<string, number> => {
  const owned = new Map<string, number>();
  while (!r.done) owned.set(r.str(), r.num());
  return owned;
};

/**
 * Claims a lease that expired (ARGV[5] sessionId) by [7] (ms, the instances' clock; at most now) and gives
 * it, under a new token, to the freest live instance other than the one that let it expire ([6] the
 * lease's lifetime): exactly one instance's claim succeeds. 'skip' when it had not expired by then (or its
 * session is gone), 'full' when no instance has room.
 */
const TAKEOVER = `
local sid, leaseMs = ARGV[5], tonumber(ARGV[6])
local by = math.min(tonumber(ARGV[7]), NOW)
local score = redis.call('ZSCORE', LEASES, sid)
if not score or tonumber(score) > by then return {'skip'} end
if redis.call('EXISTS', sk(sid)) == 0 or not isRelay(sid) then
  dropLease(sid)
  return {'skip'}
end
local to = freest(redis.call('HGET', rk(sid), 'owner'))
if not to then return {'full'} end
local token = lease(sid, to, leaseMs, 'failover')
return {'ok', OUT, to, token}
`;

/**
 * A draining owner gives ARGV[5] sessionId to the freest other instance ([6] the lease's lifetime):
 * 'skip' when it is not this instance's, 'full' when no other has room.
 */
const HANDOVER = `
local sid, leaseMs = ARGV[5], tonumber(ARGV[6])
if redis.call('HGET', rk(sid), 'owner') ~= SELF or not isRelay(sid) then return {'skip'} end
local to = freest(SELF)
if not to then return {'full'} end
local token = lease(sid, to, leaseMs, 'handover')
return {'ok', OUT, to, token}
`;

export type MoveReply = Refused<'skip' | 'full'> | { status: 'ok'; out: string[]; to: string; token: number };

const decodeMove =
  (name: string) =>
  (r: Reply): MoveReply => {
    const status = r.str();
    if (status === 'skip' || status === 'full') return { status };
    if (status !== 'ok') throw new Error(`${name}: unexpected status ${status}`);
    return { status, out: r.strings(), to: r.str(), token: r.num() };
  };

/** The new owner has sent its offers (ARGV[5] sessionId, [6] its token): a handover waits for this. */
const MARK_READY = `
local sid, token = ARGV[5], ARGV[6]
if redis.call('HGET', rk(sid), 'owner') ~= SELF or redis.call('HGET', rk(sid), 'token') ~= token then return 0 end
redis.call('HSET', rk(sid), 'ready', token)
return 1
`;

/** Whether the lease of ARGV[5] sessionId has left token ARGV[6]'s owner ready (see MARK_READY), or is gone. */
const LEASE_READY = `
local sid, token = ARGV[5], ARGV[6]
local lease = redis.call('HMGET', rk(sid), 'token', 'ready')
if not lease[1] then return 1 end
if lease[1] ~= token then return 1 end
return lease[2] == token and 1 or 0
`;

/** What an owner rebuilds a relay session from (ARGV[5] sessionId), if it holds its lease with token [6]: the own frame's JSON. */
const RELAY_STATE = `
local sid, token = ARGV[5], ARGV[6]
if redis.call('HGET', rk(sid), 'owner') ~= SELF or redis.call('HGET', rk(sid), 'token') ~= token then return {'fenced'} end
local peers = relayPeers(sid)
return {'ok', #peers == 0 and '{"why":"renewal","peers":[]}' or cjson.encode({why = 'renewal', peers = peers})}
`;

export type RelayStateReply = Refused<'fenced'> | { status: 'ok'; json: string };

const decodeRelayState = (r: Reply): RelayStateReply => {
  const status = r.str();
  if (status === 'fenced') return { status };
  if (status !== 'ok') throw new Error(`relayState: unexpected status ${status}`);
  return { status, json: r.str() };
};

export const SCRIPTS = {
  admission: script('admission', FINGERPRINT + ADMISSION, decodeAdmission),
  register: script('register', FINGERPRINT + REGISTER, decodeRegister),
  send: script('send', SEND, decodeSend),
  attach: script('attach', ATTACH, decodeAttach),
  detach: rawScript('detach', DETACH, (reply) => reply === 1),
  keepalive: rawScript('keepalive', KEEPALIVE, decodeKeepalive),
  expire: script('expire', EXPIRE, decodeExpire),
  leave: script('leave', LEAVE, decodeLeave),
  closeSession: script('closeSession', CLOSE_SESSION, decodeCloseSession),
  createSession: script('createSession', CREATE_SESSION, decodeCreateSession),
  peerAuth: script('peerAuth', PEER_AUTH, decodePeerAuth),
  sessionAuths: script('sessionAuths', SESSION_AUTHS, decodeSessionAuths),
  snapshot: script('snapshot', SNAPSHOT, decodeSnapshot),
  serverSend: script('serverSend', SERVER_SEND, decodeServerSend),
  renewLeases: script('renewLeases', RENEW_LEASES, decodeOwned),
  takeover: script('takeover', TAKEOVER, decodeMove('takeover')),
  handover: script('handover', HANDOVER, decodeMove('handover')),
  markReady: rawScript('markReady', MARK_READY, (reply) => reply === 1),
  leaseReady: rawScript('leaseReady', LEASE_READY, (reply) => reply === 1),
  relayState: script('relayState', RELAY_STATE, decodeRelayState),
  counts: script(
    'counts',
    COUNTS,
    (r): CountsReply => ({
      cluster: { sessions: r.num(), peers: r.num(), eventBytes: r.num() },
      instance: { sessions: r.num(), peers: r.num(), eventBytes: r.num() },
    }),
  ),
} as const;

/** The scripts, both as a function library and as scripts of their own (for a Redis without functions). */
export interface ScriptLibrary {
  readonly name: string;
  /** A glob (FUNCTION LIST LIBRARYNAME) for the names of every version's library. */
  readonly versionsGlob: string;
  /** Whether a library of this name is a version of this one. */
  isVersion(name: string): boolean;
  /** The library's code, for FUNCTION LOAD. */
  readonly source: string;
  readonly scripts: readonly Script[];
  functionOf(script: Script): string;
}

/**
 * Every script as one Redis function library (Redis 7 and later): PRELUDE is run once, when the
 * library loads, and a call runs only begin and its body; with EVALSHA each call defines the prelude's
 * helpers again (about 9 µs of Redis's CPU per call, measured alone). The library and its functions
 * are named after a hash of the source, so that instances of two versions (a rolling upgrade) each
 * call their own.
 */
export const LIBRARY: ScriptLibrary = (() => {
  const scripts: readonly Script[] = Object.values(SCRIPTS);
  const registrations = (version: string) =>
    scripts
      .map((s) => `redis.register_function('switchboard_${version}_${s.name}', function(_, args)\nbegin(args)\nreturn finish((function()\n${s.body}\nend)())\nend)`)
      .join('\n');
  const version = Bun.hash(PRELUDE + registrations('')).toString(16);
  const functions = new Map(scripts.map((s) => [s, `switchboard_${version}_${s.name}`]));
  return {
    name: `switchboard_${version}`,
    versionsGlob: 'switchboard_*',
    isVersion: (name: string) => /^switchboard_[0-9a-f]+$/.test(name),
    source: `#!lua name=switchboard_${version}\n${PRELUDE}\n${registrations(version)}\n`,
    scripts,
    /** The function that runs `script`. */
    functionOf: (script: Script) => functions.get(script) ?? `switchboard_${version}_${script.name}`,
  };
})();
