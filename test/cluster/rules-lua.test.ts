import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { RedisClient } from 'bun';
import { eventBounds, QUEUE_REFUSAL_LUA, queueRefusal, RESUME_LUA, resumeRefusal } from '../../src/delivery/rules';
import { type AdmissionCounts, type AdmissionLimits, capsLua, firstRefusingCap } from '../../src/sessions/rules';
import { RedisServer } from './redis-server';

let redis: RedisServer;
let client: RedisClient;
beforeAll(async () => {
  redis = await RedisServer.start();
  client = new RedisClient(redis.url, { autoReconnect: false });
});
afterAll(async () => {
  client.close();
  await redis.dispose();
});

const bool = (b: boolean) => (b ? '1' : '0');

/** Every combination of the values given for each field. */
function* grid<T extends Record<string, readonly unknown[]>>(axes: T): Generator<{ [K in keyof T]: T[K][number] }> {
  const keys = Object.keys(axes) as (keyof T)[];
  const at = keys.map(() => 0);
  for (;;) {
    yield Object.fromEntries(keys.map((k, i) => [k, axes[k]?.[at[i] as number]])) as { [K in keyof T]: T[K][number] };
    let i = 0;
    for (; i < keys.length; i++) {
      at[i] = (at[i] as number) + 1;
      if ((at[i] as number) < (axes[keys[i] as keyof T]?.length ?? 0)) break;
      at[i] = 0;
    }
    if (i === keys.length) return;
  }
}

describe('the Lua the scripts are built from decides as the TypeScript rules do', () => {
  test('admission caps: the same cap refuses, in the same order, for every combination around the limits', async () => {
    const source = `${capsLua()}
local function b(i) return ARGV[i] == '1' end
local C = {exists = b(1), registered = b(2), holdsIt = b(3), hasOrigin = b(4), sessions = tonumber(ARGV[5]), peers = tonumber(ARGV[6]),
  ownSessions = tonumber(ARGV[7]), ownPeers = tonumber(ARGV[8])}
local L = {maxSessions = tonumber(ARGV[9]), maxPeersPerSession = tonumber(ARGV[10]), maxSessionsPerIp = tonumber(ARGV[11]), maxPeersPerIp = tonumber(ARGV[12])}
return caps(C, L)`;
    const cases = grid({
      exists: [false, true],
      registered: [false, true],
      holdsIt: [false, true],
      hasOrigin: [false, true],
      sessions: [1, 2],
      peers: [1, 2],
      ownSessions: [0, 1, 2],
      ownPeers: [0, 1, 2],
      perIp: [0, 2],
    });
    let checked = 0;
    for (const c of cases) {
      const counts: AdmissionCounts = { ...c };
      const limits: AdmissionLimits = { maxSessions: 2, maxPeersPerSession: 2, maxSessionsPerIp: c.perIp, maxPeersPerIp: c.perIp };
      const args = [bool(c.exists), bool(c.registered), bool(c.holdsIt), bool(c.hasOrigin), c.sessions, c.peers, c.ownSessions, c.ownPeers, 2, 2, c.perIp, c.perIp].map(String);
      const lua = (await client.send('EVAL', [source, '0', ...args])) as number;
      expect([checked, lua]).toEqual([checked, firstRefusingCap(counts, limits)]);
      checked++;
    }
    expect(checked).toBe(2 ** 4 * 2 * 2 * 3 * 3 * 2);
  });

  test('resume: the same Last-Event-IDs are superseded, out of the window, or resumable', async () => {
    const source = `${RESUME_LUA}
return resumeRefusal(tonumber(ARGV[1]), {epoch = tonumber(ARGV[2]), first = tonumber(ARGV[3]), last = tonumber(ARGV[4])}) or ''`;
    const window = { epoch: 5, first: 8, last: 12 };
    for (let from = 0; from <= 14; from++) {
      const lua = (await client.send('EVAL', [source, '0', String(from), String(window.epoch), String(window.first), String(window.last)])) as string;
      expect([from, lua]).toEqual([from, resumeRefusal(from, window) ?? '']);
    }
    expect([3, 4, 6, 7, 13].map((from) => resumeRefusal(from, window))).toEqual(['superseded', 'resume_gap', 'resume_gap', undefined, 'resume_gap']);
  });

  test("a target's bounds on client messages: the same count and bytes refuse, for the same reason", async () => {
    const source = `${QUEUE_REFUSAL_LUA}
return refusal({held = tonumber(ARGV[1]), hbytes = tonumber(ARGV[2])}, tonumber(ARGV[3]), {held = tonumber(ARGV[4]), peerBytes = tonumber(ARGV[5])}) or ''`;
    const bounds = eventBounds({ maxQueue: 3, maxPeerEventBytes: 100, maxEventBytes: 1000 });
    for (const c of grid({ events: [2, 3, 4], bytes: [0, 60, 100], size: [1, 40, 41] })) {
      const lua = (await client.send('EVAL', [source, '0', ...[c.events, c.bytes, c.size, bounds.maxHeld, bounds.peerBytes].map(String)])) as string;
      expect([c, lua]).toEqual([c, queueRefusal(c, c.size, bounds) ?? '']);
    }
    expect([queueRefusal({ events: 2, bytes: 60 }, 40, bounds), queueRefusal({ events: 2, bytes: 60 }, 41, bounds), queueRefusal({ events: 3, bytes: 0 }, 1, bounds)]).toEqual([
      undefined,
      'bytes',
      'held',
    ]);
  });
});
