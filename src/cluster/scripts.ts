/**
 * The Lua scripts that change the cluster's state in Redis. Each runs atomically, so that a
 * registration, a takeover, an append with its cap check or the claim of an expired peer is one step
 * that no other instance can interleave with. Every script takes no KEYS and these ARGV first:
 *
 *   ARGV[1] key prefix   ARGV[2] this instance's id   ARGV[3] now (ms, the instances' clock)   ARGV[4] key TTL (ms)
 *
 * Keys are computed from the prefix and the ids, so scripts touch keys they could not declare (the peers
 * of a session): they need one Redis server (a primary, with replicas or Sentinel), not Redis Cluster.
 *
 * Layout. Every key and channel is the prefix, "/", the kind of key, then "/" and the one id it is
 * of (a = "<sessionId>/<peerId>" counts as one: the peer's address). Neither the prefix (REDIS_PREFIX,
 * `A-Za-z0-9._:-`) nor an id (`A-Za-z0-9._:@|~-`) can contain "/". So the first "/" ends the prefix,
 * the second ends the kind, the id is all that follows (for an address, split at its only "/"), and
 * two different (prefix, kind, ids) never give the same key, whatever the ids: session "X:p" and
 * session "X" share nothing, nor do deployments with prefixes "P" and "P:s". Keys are built from
 * SEP and KIND only: by the helpers of PRELUDE in the scripts, by `redisKey` in TypeScript. Instances
 * of this version do not read keys of the earlier layout ("P:s:<sid>"): those expire by their TTL.
 *
 * Keys (P = prefix):
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
 *                    (alive), for AddressHoldings' caps
 *   P/h/a            the id of the instance holding the peer's stream
 *   P/c/<instance>   the pub/sub channel of an instance
 *
 * Messages to an instance (one line each field, the JSON last; ids contain no line break and
 * JSON.stringify writes none, so "\n" splits them):
 *   e\n<a>\n<id>\n<stamp>\n<json>        an event was appended: write it
 *   c\n<a>\n<gen>\n<id>\n<json>          close the stream of an attach older than <gen> (0: any), after
 *                                        writing the final event <json> with <id> when given
 *   a\n<a>                               the peer's held events reached the cap: cut its slow stream
 * A message for the calling instance itself is returned in the script's reply (OUT) instead of published.
 * The scripts write ids into JSON unescaped: the id alphabet has no quote or backslash.
 */

/** Separates the parts of every key and channel, and a peer's session id from its id: ids and prefixes cannot contain it. */
const SEP = '/';

/** The kind of each key, its second part. */
const KIND = {
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
} as const;

const key = (prefix: string, kind: string, id?: string): string => prefix + SEP + kind + (id === undefined ? '' : SEP + id);

/** A peer's address in Redis (its keys, deadline and messages): session id and peer id, split at the only "/". */
export const peerAddress = (sessionId: string, peerId: string): string => sessionId + SEP + peerId;

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
} as const;

import { CLIENT_TAG, type EventBounds, type Topic } from '../delivery/rules';

/** An event's topic as the scripts take it (see topicAt): its tag, its barrier, the tags it replaces. */
export const topicArgs = (topic: Topic): string[] => [topic.tag, topic.barrier, topic.replaces.join('\n')];

/** The event bounds as the scripts take them (see boundsAt). */
export const boundsArgs = (bounds: EventBounds): string[] => [String(bounds.maxHeld), String(bounds.maxHeldAny), String(bounds.peerBytes), String(bounds.totalBytes)];

const PRELUDE = `
local P, SELF, NOW, TTL = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local OUT = {}
local SEP = '${SEP}'
local SESSIONS, DL = P .. SEP .. '${KIND.sessions}', P .. SEP .. '${KIND.deadlines}'
local function key(kind, id) return P .. SEP .. kind .. SEP .. id end
local function sk(sid) return key('${KIND.session}', sid) end
local function pk(sid) return key('${KIND.peers}', sid) end
local function ik(sid) return key('${KIND.invites}', sid) end
local function mk(a) return key('${KIND.mailbox}', a) end
local function lk(a) return key('${KIND.log}', a) end
local function hk(a) return key('${KIND.holder}', a) end
local function ck(instance) return key('${KIND.channel}', instance) end

-- A new session's hash: when it was created, and its place among the sessions created.
local function newSession(sid)
  local created = P .. SEP .. '${KIND.created}'
  local order = redis.call('INCR', created)
  redis.call('PEXPIRE', created, TTL)
  redis.call('HSET', sk(sid), 'createdAt', NOW, 'order', order, 'joins', 0)
end

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
local BYTES = P .. SEP .. '${KIND.bytes}'
local function count(held, all)
  if held ~= 0 then redis.call('HINCRBY', BYTES, 'held', held) end
  if all ~= 0 then redis.call('HINCRBY', BYTES, 'all', all) end
  redis.call('PEXPIRE', BYTES, TTL)
end
local function total(field) return tonumber(redis.call('HGET', BYTES, field) or '0') end

-- What each client address holds alive (AddressHoldings): 's' .. key, the sessions it created, and
-- 'p' .. key, the registrations it made. A registration's address is its record's "o".
local HOLDINGS = P .. SEP .. '${KIND.holdings}'
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

-- A's mailbox counters: last, cursor, first (lowest id kept), held (undelivered events that exist) and
-- hbytes (their bytes), bytes (of every event in the log). Nil when a has no mailbox.
local function box(a)
  local m = redis.call('HMGET', mk(a), 'last', 'cursor', 'first', 'held', 'hbytes', 'bytes', 'epoch')
  if not m[1] then return nil end
  return {last = tonumber(m[1]), cursor = tonumber(m[2]), first = tonumber(m[3] or m[7]), held = tonumber(m[4] or '0'),
    hbytes = tonumber(m[5] or '0'), bytes = tonumber(m[6] or '0')}
end
local function store(a, b)
  redis.call('HSET', mk(a), 'last', b.last, 'cursor', b.cursor, 'first', b.first, 'held', b.held, 'hbytes', b.hbytes, 'bytes', b.bytes)
end

-- Gives back what a's log weighs: it is about to be deleted.
local function forget(a)
  local b = box(a)
  if b then count(-b.hbytes, -b.bytes) end
end

-- Why a client message of size bytes cannot be taken by a now (Mailbox.refusal): 'held', 'bytes', or nil.
local function refusal(b, size, B)
  if b.held >= B.held then return 'held' end
  if b.hbytes + size > B.peerBytes then return 'bytes' end
  return nil
end

-- Drops a's written events kept for resume, oldest first, until excess bytes are freed (Mailbox.dropRetained).
local function dropRetained(a, b, excess)
  local freed = 0
  while freed < excess and b.first <= b.cursor do
    local rows = redis.call('XRANGE', lk(a), '0-' .. b.first, '0-' .. b.cursor, 'COUNT', 16)
    if #rows == 0 then b.first = b.cursor + 1 break end
    for _, row in ipairs(rows) do
      redis.call('XDEL', lk(a), row[1])
      freed = freed + #row[2][2]
      b.first = tonumber(string.sub(row[1], 3)) + 1
      if freed >= excess then break end
    end
  end
  b.bytes = b.bytes - freed
  count(0, -freed)
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

-- Appends an event of topic T to a's log and routes it to a's stream (Mailbox.append under bounds B).
-- Returns id, held before, receivers of the route (-1: this instance); nil when a has no mailbox;
-- false, held, why ('held', 'bytes', 'total'), held bytes when a client message finds no room.
local function append(a, json, client, stamp, T, B)
  local b = box(a)
  if not b then return nil end
  local size = #json
  if client then
    local why = total('held') + size > B.totalBytes and 'total' or refusal(b, size, B)
    if why then
      route(a, 'a\\n' .. a)
      return false, b.held, why, why == 'total' and total('held') or b.hbytes
    end
  else
    if T.any then supersede(a, b, T) end
    if b.held >= B.heldAny then dropOldestServerEvent(a, b) end
  end
  local held = b.held
  dropRetained(a, b, b.bytes + size - B.peerBytes)
  -- Other peers' kept events are out of this script's reach: their holders drop them (KEEPALIVE).
  dropRetained(a, b, total('all') + size - B.totalBytes)
  local id = b.last + 1
  local previous = T.tag ~= '' and redis.call('HGET', mk(a), 't' .. T.tag) or '0'
  redis.call('XADD', lk(a), '0-' .. id, 'e', json, 't', stamp, 'k', T.tag, 'q', previous or '0')
  if T.tag ~= '' then redis.call('HSET', mk(a), 't' .. T.tag, id) end
  redis.call('PEXPIRE', lk(a), TTL)
  b.last, b.held, b.hbytes, b.bytes = id, b.held + 1, b.hbytes + size, b.bytes + size
  count(size, size)
  store(a, b)
  return id, held, route(a, 'e\\n' .. a .. '\\n' .. id .. '\\n' .. stamp .. '\\n' .. json)
end

local function deleteSession(sid)
  local by = redis.call('HGET', sk(sid), 'by')
  if by then hold('s' .. by, -1) end
  local all = redis.call('HGETALL', pk(sid))
  for i = 1, #all, 2 do
    local pid = all[i]
    local origin = originOf(all[i + 1])
    if origin then hold('p' .. origin, -1) end
    local a = sid .. '/' .. pid
    redis.call('ZREM', DL, a)
    forget(a)
    redis.call('DEL', mk(a), lk(a), hk(a))
  end
  redis.call('DEL', sk(sid), pk(sid), ik(sid))
  redis.call('ZREM', DL, '/' .. sid)
  redis.call('SREM', SESSIONS, sid)
end

-- Removes a registered peer: its stream closes, the others get peer-left, the last one out ends the
-- session (an admin session waits idleMs instead). T is the topic of the peer-left notice, B the bounds.
-- Returns 'left', 'idle' or 'closed'.
local function removePeer(sid, pid, T, B)
  local a = sid .. '/' .. pid
  local origin = originOf(redis.call('HGET', pk(sid), pid))
  if origin then hold('p' .. origin, -1) end
  redis.call('HDEL', pk(sid), pid)
  redis.call('ZREM', DL, a)
  route(a, 'c\\n' .. a .. '\\n0\\n\\n')
  forget(a)
  redis.call('DEL', mk(a), lk(a), hk(a))
  if redis.call('HLEN', pk(sid)) == 0 then
    local idle = redis.call('HGET', sk(sid), 'idleMs')
    if idle then
      redis.call('ZADD', DL, NOW + tonumber(idle), '/' .. sid)
      touchSession(sid)
      return 'idle'
    end
    deleteSession(sid)
    return 'closed'
  end
  local left = '{"type":"peer-left","senderId":"' .. pid .. '"}'
  for _, other in ipairs(redis.call('HKEYS', pk(sid))) do append(sid .. '/' .. other, left, false, '-1', T, B) end
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

/** What an admission check needs: ARGV[5] sessionId, ARGV[6] peerId. */
const ADMISSION = `
local sid, pid = ARGV[5], ARGV[6]
local sessions = redis.call('SCARD', SESSIONS)
if redis.call('EXISTS', sk(sid)) == 0 then return {0, sessions, ''} end
local meta = redis.call('HMGET', sk(sid), 'idleMs', 'inv')
local seen, publisher = fingerprint(sid, pid)
return {1, sessions, seen, redis.call('HLEN', pk(sid)), meta[1] and 1 or 0, meta[2] and 1 or 0,
  redis.call('HGET', pk(sid), pid), redis.call('HGET', ik(sid), pid), publisher}
`;

/**
 * Registers or takes over, if what the admission check decided on is unchanged (FINGERPRINT):
 * ARGV[5] sessionId, [6] peerId, [7] the fingerprint seen, [8] credentials JSON (an object),
 * [9] peer timeout ms, [10] max sessions, [11] max peers per session, [12…14] the new-peer notice's
 * topic, [15…18] the event bounds, [19] the key of the client's address ('' when unknown),
 * [20] the sessions and [21] the registrations it may hold (0: no cap; see AddressHoldings).
 */
const REGISTER = `
local sid, pid, seen, record = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local peerTimeout, maxSessions, maxPeers = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local T, B = topicAt(12), boundsAt(15)
local origin, maxOwnSessions, maxOwnPeers = ARGV[19], tonumber(ARGV[20]), tonumber(ARGV[21])
if fingerprint(sid, pid) ~= seen then return {'conflict'} end
local was = originOf(redis.call('HGET', pk(sid), pid))
if origin ~= '' then
  if seen == '' and maxOwnSessions > 0 and holding('s' .. origin) >= maxOwnSessions then return {'too_many_own_sessions'} end
  if was ~= origin and maxOwnPeers > 0 and holding('p' .. origin) >= maxOwnPeers then return {'too_many_peers'} end
end
local created = 0
if seen == '' then
  if redis.call('SCARD', SESSIONS) >= maxSessions then return {'too_many_sessions'} end
  newSession(sid)
  redis.call('SADD', SESSIONS, sid)
  if origin ~= '' then
    redis.call('HSET', sk(sid), 'by', origin)
    hold('s' .. origin, 1)
  end
  created = 1
end
local current = redis.call('HGET', pk(sid), pid)
local takeover = current and 1 or 0
if takeover == 0 and redis.call('HLEN', pk(sid)) >= maxPeers then return {'session_full'} end
-- Its place in the session: kept on takeover, the next one for a newcomer.
local place = current and string.match(current, '"n":(%d+)') or redis.call('HINCRBY', sk(sid), 'joins', 1)
local stored = string.sub(record, 1, -2) .. (record == '{}' and '' or ',') .. '"n":' .. place
redis.call('HSET', pk(sid), pid, stored .. (origin ~= '' and (',"o":"' .. origin .. '"') or '') .. '}')
-- A takeover moves the registration to the address that made it now.
if was ~= (origin ~= '' and origin or nil) then
  if was then hold('p' .. was, -1) end
  if origin ~= '' then hold('p' .. origin, 1) end
end
redis.call('ZREM', DL, '/' .. sid)
local a = sid .. '/' .. pid
local m = redis.call('HMGET', mk(a), 'last', 'gen')
-- A new incarnation: one id is skipped, so that the old one's Last-Event-ID never passes for the new one's.
local epoch = m[1] and (tonumber(m[1]) + 2) or 1
local gen = (m[2] and tonumber(m[2]) or 0) + 1
route(a, 'c\\n' .. a .. '\\n' .. gen .. '\\n\\n')
forget(a)
redis.call('DEL', mk(a), lk(a), hk(a))
redis.call('HSET', mk(a), 'epoch', epoch, 'last', epoch - 1, 'cursor', epoch - 1, 'gen', gen, 'first', epoch, 'held', 0, 'hbytes', 0, 'bytes', 0)
redis.call('PEXPIRE', mk(a), TTL)
redis.call('ZADD', DL, NOW + peerTimeout, a)
local others = {}
local joined = '{"type":"new-peer","senderId":"' .. pid .. '"}'
for _, other in ipairs(redis.call('HKEYS', pk(sid))) do
  if other ~= pid then
    others[#others + 1] = other
    append(sid .. '/' .. other, joined, false, '-1', T, B)
  end
end
touchSession(sid)
keepCounts()
return {'ok', OUT, created, takeover, epoch - 1, others}
`;

/**
 * A client message: ARGV[5] sessionId, [6] sender, [7] target ('' for every other peer), [8] event
 * JSON, [9] stamp (ms accepted), [10…12] its topic, [13…16] the event bounds. A broadcast reaches every
 * other peer or none. Returns 'ok', OUT, then per target: peerId, id, held before, receivers; or
 * 'queue_full', peerId, held, OUT, why ('held', 'bytes', 'total'), held bytes (the target's or everyone's).
 */
const SEND = `
local sid, pid, target, json, stamp = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local T, B = topicAt(10), boundsAt(13)
if redis.call('EXISTS', sk(sid)) == 0 then return {'session_not_found'} end
if redis.call('HEXISTS', pk(sid), pid) == 0 then return {'peer_not_found'} end
local result = {'ok', OUT}
if target ~= '' then
  if redis.call('HEXISTS', pk(sid), target) == 0 then return {'target_not_found', target} end
  local id, held, receivers, bytes = append(sid .. '/' .. target, json, true, stamp, T, B)
  if id == nil then return {'target_not_found', target} end
  if id == false then return {'queue_full', target, held, OUT, receivers, bytes} end
  result[3], result[4], result[5], result[6] = target, id, held, receivers
  return result
end
local targets = {}
for _, other in ipairs(redis.call('HKEYS', pk(sid))) do
  if other ~= pid then
    local b = box(sid .. '/' .. other)
    local why = b and refusal(b, #json, B)
    if why then return {'queue_full', other, b.held, OUT, why, b.hbytes} end
    targets[#targets + 1] = other
  end
end
if total('held') + #json * #targets > B.totalBytes then return {'queue_full', '', 0, OUT, 'total', total('held')} end
for _, other in ipairs(targets) do
  local id, held, receivers = append(sid .. '/' .. other, json, true, stamp, T, B)
  if id then
    result[#result + 1] = other
    result[#result + 1] = id
    result[#result + 1] = held
    result[#result + 1] = receivers
  end
end
return result
`;

/**
 * Attaches a stream on this instance: ARGV[5] sessionId, [6] peerId, [7] Last-Event-ID ('' for none),
 * [8] the peer's deadline while attached. Returns 'ok', OUT, gen, cursor, then the events after the cursor.
 */
const ATTACH = `
local sid, pid, resume, deadline = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
if redis.call('EXISTS', sk(sid)) == 0 then return {'session_not_found'} end
if redis.call('HEXISTS', pk(sid), pid) == 0 then return {'peer_not_found'} end
local a = sid .. '/' .. pid
local m = redis.call('HMGET', mk(a), 'epoch', 'gen')
local b = box(a)
if not b then return {'peer_not_found'} end
local epoch, gen = tonumber(m[1]), tonumber(m[2])
if resume ~= '' then
  local from = tonumber(resume)
  if from < epoch - 1 then return {'superseded'} end
  if from > b.last or from < b.first - 1 then return {'resume_gap', from} end
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
route(a, 'c\\n' .. a .. '\\n' .. gen .. '\\n\\n')
redis.call('HSET', mk(a), 'gen', gen)
redis.call('SET', hk(a), SELF, 'PX', TTL)
redis.call('ZADD', DL, deadline, a)
redis.call('PEXPIRE', mk(a), TTL)
redis.call('PEXPIRE', lk(a), TTL)
touchSession(sid)
keepCounts()
return {'ok', OUT, gen, cursor, events}
`;

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
 * The holder's periodic refresh of attach <gen>, and its cursor: ARGV[5] a, [6] gen, [7] cursor,
 * [8] deadline while attached, [9] events kept for resume, [10] the cluster's byte budget. Returns the
 * last id, or false when that attach is over (the peer left, was taken over or attached elsewhere): the
 * holder then ends its stream.
 */
const KEEPALIVE = `
local a, gen, cursor, deadline, retain = ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local m = redis.call('HMGET', mk(a), 'gen', 'last')
if m[1] ~= gen then return false end
local b = box(a)
if cursor > b.cursor then
  local written = 0
  local rows = redis.call('XRANGE', lk(a), '(0-' .. b.cursor, '0-' .. cursor)
  for _, row in ipairs(rows) do written = written + #row[2][2] end
  b.held, b.hbytes = math.max(0, b.held - #rows), b.hbytes - written
  count(-written, 0)
end
b.cursor = cursor
-- The newest id per topic tag matters only while that event is held: past many, the written ones go.
if redis.call('HLEN', mk(a)) > 128 then
  local fields = redis.call('HGETALL', mk(a))
  for i = 1, #fields, 2 do
    local name = fields[i]
    if string.sub(name, 1, 1) == 't' and #name > 1 and tonumber(fields[i + 1]) <= cursor then redis.call('HDEL', mk(a), name) end
  end
end
-- Past the cluster's budget, the events kept for resume go first: each holder drops its peers' here.
local keep = total('all') > tonumber(ARGV[10]) and cursor + 1 or cursor - retain + 1
if keep > b.first then
  local freed = 0
  for _, row in ipairs(redis.call('XRANGE', lk(a), '-', '(0-' .. keep)) do freed = freed + #row[2][2] end
  redis.call('XTRIM', lk(a), 'MINID', '0-' .. keep)
  b.bytes, b.first = b.bytes - freed, keep
  count(0, -freed)
end
store(a, b)
if deadline > 0 then
  redis.call('SET', hk(a), SELF, 'PX', TTL)
  redis.call('ZADD', DL, deadline, a)
  redis.call('PEXPIRE', mk(a), TTL)
  redis.call('PEXPIRE', lk(a), TTL)
  touchSession(string.match(a, '^(.-)/'))
  keepCounts()
end
return tonumber(m[2])
`;

/**
 * Claims one due deadline (ARGV[5], the member) with ZREM, so that exactly one instance acts on it: an
 * expired peer is removed (the others get peer-left: [6…8] its topic, [9…12] the event bounds), an idle
 * admin session without peers ends.
 */
const EXPIRE = `
local member = ARGV[5]
local score = redis.call('ZSCORE', DL, member)
if not score or tonumber(score) > NOW then return {'skip'} end
redis.call('ZREM', DL, member)
if string.sub(member, 1, 1) == '/' then
  local sid = string.sub(member, 2)
  if redis.call('EXISTS', sk(sid)) == 0 or redis.call('HLEN', pk(sid)) > 0 then return {'skip'} end
  deleteSession(sid)
  return {'idle', OUT, sid}
end
local sid, pid = string.match(member, '^(.-)/(.*)$')
if not sid or redis.call('HEXISTS', pk(sid), pid) == 0 then return {'skip'} end
return {'timeout', OUT, sid, pid, removePeer(sid, pid, topicAt(6), boundsAt(9))}
`;

/** The peer leaves: ARGV[5] sessionId, [6] peerId, [7…9] the peer-left notice's topic, [10…13] the event bounds. */
const LEAVE = `
local sid, pid = ARGV[5], ARGV[6]
if redis.call('EXISTS', sk(sid)) == 0 then return {'session_not_found'} end
if redis.call('HEXISTS', pk(sid), pid) == 0 then return {'peer_not_found'} end
return {'ok', OUT, removePeer(sid, pid, topicAt(7), boundsAt(10))}
`;

/** Closes a session: ARGV[5] sessionId, [6] the final event's JSON. Every stream gets it, then ends. */
const CLOSE_SESSION = `
local sid, final = ARGV[5], ARGV[6]
if redis.call('EXISTS', sk(sid)) == 0 then return {'session_not_found'} end
for _, pid in ipairs(redis.call('HKEYS', pk(sid))) do
  local a = sid .. '/' .. pid
  local last = redis.call('HGET', mk(a), 'last')
  if last then route(a, 'c\\n' .. a .. '\\n0\\n' .. (tonumber(last) + 1) .. '\\n' .. final) end
end
deleteSession(sid)
return {'ok', OUT}
`;

/**
 * An admin session: ARGV[5] sessionId, [6] idle ms, [7] max sessions, [8] '1' with an allow-list,
 * then peerId, invite JSON pairs.
 */
const CREATE_SESSION = `
local sid, idle, maxSessions = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('EXISTS', sk(sid)) == 1 then return {'session_exists'} end
if redis.call('SCARD', SESSIONS) >= maxSessions then return {'too_many_sessions'} end
newSession(sid)
redis.call('HSET', sk(sid), 'idleMs', idle)
if ARGV[8] == '1' then redis.call('HSET', sk(sid), 'inv', 1) end
for i = 9, #ARGV, 2 do redis.call('HSET', ik(sid), ARGV[i], ARGV[i + 1]) end
redis.call('SADD', SESSIONS, sid)
redis.call('ZADD', DL, NOW + idle, '/' .. sid)
touchSession(sid)
return {'ok'}
`;

/** ARGV[5] sessionId, [6] peerId: the peer's credentials JSON. */
const PEER_AUTH = `
local sid, pid = ARGV[5], ARGV[6]
if redis.call('EXISTS', sk(sid)) == 0 then return {'session_not_found'} end
local record = redis.call('HGET', pk(sid), pid)
if not record then return {'peer_not_found'} end
return {'ok', record}
`;

/** ARGV[5] sessionId: peerId, credentials JSON pairs. */
const SESSION_AUTHS = `
local sid = ARGV[5]
if redis.call('EXISTS', sk(sid)) == 0 then return {'session_not_found'} end
return {'ok', redis.call('HGETALL', pk(sid))}
`;

/** ARGV[5] sessionId: createdAt, idleMs, inv, peers (id, credentials, streaming 0/1 triples), invites (pairs), order. */
const SNAPSHOT = `
local sid = ARGV[5]
if redis.call('EXISTS', sk(sid)) == 0 then return {'session_not_found'} end
local meta = redis.call('HMGET', sk(sid), 'createdAt', 'idleMs', 'inv', 'order')
local peers = {}
local all = redis.call('HGETALL', pk(sid))
for i = 1, #all, 2 do
  peers[#peers + 1] = all[i]
  peers[#peers + 1] = all[i + 1]
  peers[#peers + 1] = redis.call('EXISTS', hk(sid .. '/' .. all[i]))
end
return {'ok', meta[1], meta[2], meta[3], peers, redis.call('HGETALL', ik(sid)), meta[4]}
`;

/** The cluster's sessions, peers and event bytes, for the gauges. */
const COUNTS = `
local sessions = redis.call('SMEMBERS', SESSIONS)
local peers = 0
for _, sid in ipairs(sessions) do peers = peers + redis.call('HLEN', pk(sid)) end
return {#sessions, peers, total('all')}
`;

export interface Script {
  readonly name: string;
  readonly source: string;
}

const script = (name: string, body: string): Script => ({ name, source: PRELUDE + body });

export const SCRIPTS = {
  admission: script('admission', FINGERPRINT + ADMISSION),
  register: script('register', FINGERPRINT + REGISTER),
  send: script('send', SEND),
  attach: script('attach', ATTACH),
  detach: script('detach', DETACH),
  keepalive: script('keepalive', KEEPALIVE),
  expire: script('expire', EXPIRE),
  leave: script('leave', LEAVE),
  closeSession: script('closeSession', CLOSE_SESSION),
  createSession: script('createSession', CREATE_SESSION),
  peerAuth: script('peerAuth', PEER_AUTH),
  sessionAuths: script('sessionAuths', SESSION_AUTHS),
  snapshot: script('snapshot', SNAPSHOT),
  counts: script('counts', COUNTS),
} as const;
