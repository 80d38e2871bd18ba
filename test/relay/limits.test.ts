// What an anonymous client can make the relay hold: candidates (their length and number), ICE restarts,
// connections and their UDP sockets (made only once a stream is open), relay peers per process and per
// address, and who may create relay sessions at all (RELAY_MODE).
import { describe, expect, test } from 'bun:test';
import { SignJWT } from 'jose';
import { type Config, defaultConfig, loadConfig, relayMode } from '../../src/config';
import { RelayEngine } from '../../src/relay/engine';
import { MAX_CANDIDATE_LENGTH, MAX_REMOTE_CANDIDATES } from '../../src/relay/messages';
import { udpSockets } from '../fixtures/udp-sockets';
import { appsPerTest, ManualClock, post, req, serversPerTest, until } from '../helpers';
import { ofType, openEvents } from '../sse-client';
import { openSocket } from '../ws-client';

const build = appsPerTest();
const app = (config: Partial<Config> = {}, clock?: ManualClock) => build(config, clock ? { clock } : {});

const candidate = (n: number) => ({ candidate: `candidate:${n} 1 udp 2122260223 192.0.2.9 ${50000 + n} typ host`, sdpMid: '0', sdpMLineIndex: 0 });

/** Waits until `read()` is `expected` (werift closes its sockets asynchronously), then checks it. */
async function settles(read: () => number, expected: number): Promise<void> {
  await until(() => read() === expected, `${expected} from ${read.toString()}`).catch(() => undefined);
  expect(read()).toBe(expected);
}

describe('candidates to switchboard', () => {
  test('an oversized candidate, sdpMid or usernameFragment, or an sdpMLineIndex that is no index, is a 400 naming the limit', async () => {
    const a = app();
    await req(a.app, 'POST', '/register/r/cam?mode=relay');
    const send = (payload: unknown) => req(a.app, 'POST', '/message/r/cam', { type: 'ice-candidate', target: 'switchboard', payload });
    const long = `candidate:1 1 udp 2122260223 192.0.2.9 50000 typ host ${'x'.repeat(MAX_CANDIDATE_LENGTH)}`;
    for (const [payload, words] of [
      [{ candidate: long, sdpMid: '0' }, `at most ${MAX_CANDIDATE_LENGTH}`],
      [{ ...candidate(1), sdpMid: 'm'.repeat(65) }, 'payload.sdpMid is at most 64'],
      [{ ...candidate(1), usernameFragment: 'u'.repeat(257) }, 'payload.usernameFragment is at most 256'],
      [{ ...candidate(1), sdpMLineIndex: 1e9 }, 'payload.sdpMLineIndex'],
      [{ ...candidate(1), sdpMLineIndex: -1 }, 'payload.sdpMLineIndex'],
    ] as const) {
      const res = await send(payload);
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_request');
      expect(res.body.message).toContain(words);
    }
    expect((await send({ ...candidate(1), usernameFragment: 'abcd' })).status).toBe(200);
  });

  const { listen, streams } = serversPerTest();

  test(`a connection takes ${MAX_REMOTE_CANDIDATES} candidates before the answer, then refuses each in its own answer; a restart starts anew`, async () => {
    const running = listen();
    const { url } = running;
    await post(`${url}/register/r/cam?mode=relay`);
    const cam = await openEvents(`${url}/events/r/cam`);
    streams.push(cam);
    await cam.next(ofType('offer', 'switchboard'));
    const send = (type: string, payload?: unknown) =>
      fetch(`${url}/message/r/cam`, { method: 'POST', body: JSON.stringify({ type, target: 'switchboard', payload }) }).then(async (r) => ({
        status: r.status,
        body: await r.json(),
      }));
    for (let n = 0; n < MAX_REMOTE_CANDIDATES; n++) expect((await send('ice-candidate', candidate(n))).status).toBe(200);
    const refused = await send('ice-candidate', candidate(999));
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ error: 'too_many_candidates' });
    expect(refused.body.message).toContain(`${MAX_REMOTE_CANDIDATES} ICE candidates`);
    // The end of candidates is no candidate: still taken.
    expect((await send('ice-candidate', null)).status).toBe(200);
    expect((await send('ice-restart')).status).toBe(200);
    await cam.next(ofType('offer', 'switchboard'));
    expect((await send('ice-candidate', candidate(1000))).status).toBe(200);
    expect(running.relay?.stats().connections).toBe(1);
  });
});

describe('ice-restart to switchboard', () => {
  const { listen, streams } = serversPerTest();

  test('is rate-limited per peer: past the burst a 429 with Retry-After, and again once the bucket refills', async () => {
    const clock = new ManualClock();
    const { url } = listen({ relayIceRestartsPerMin: 6 }, { clock });
    await post(`${url}/register/r/cam?mode=relay`);
    await post(`${url}/register/r/v1`);
    const cam = await openEvents(`${url}/events/r/cam`);
    streams.push(cam);
    await cam.next(ofType('offer', 'switchboard'));
    const restart = (peer: string) => fetch(`${url}/message/r/${peer}`, { method: 'POST', body: JSON.stringify({ type: 'ice-restart', target: 'switchboard' }) });
    for (let i = 0; i < 3; i++) expect((await restart('cam')).status).toBe(200);
    const limited = await restart('cam');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('10');
    expect(await limited.json()).toMatchObject({ error: 'rate_limited', message: expect.stringContaining('RELAY_ICE_RESTARTS_PER_MIN') });
    // Per peer: another peer of the session restarts as before.
    expect((await restart('v1')).status).toBe(200);
    clock.advance(10_000);
    expect((await restart('cam')).status).toBe(200);
    // Each restart that was taken made one offer; the refused one made none.
    await cam.next(ofType('offer', 'switchboard'));
    const offers = () => cam.events.filter((e) => e.json.type === 'offer').length;
    await settles(offers, 5);
  });
});

describe('connections are made once the peer can be reached', () => {
  const { listen, streams } = serversPerTest();
  const events = async (url: string, lastEventId?: string) => {
    const s = await openEvents(url, { lastEventId });
    streams.push(s);
    return s;
  };

  test('registrations without a stream open no UDP socket; a stream opens one connection, a resumed stream no second, a takeover replaces it', async () => {
    const running = listen();
    const { url } = running;
    const relay = running.relay;
    const baseline = udpSockets();
    for (let i = 0; i < 10; i++) expect((await post(`${url}/register/idle-${i}/cam?mode=relay`)).status).toBe(200);
    await relay?.ready;
    expect(relay?.stats()).toMatchObject({ sessions: 10, connections: 0 });

    // One peer opens its stream: its offer comes with a candidate in it (so gathering happened), and one socket with them.
    await post(`${url}/register/live/cam?mode=relay`);
    const first = await events(`${url}/events/live/cam`);
    const offer = await first.next(ofType('offer', 'switchboard'));
    expect((offer.json.payload as { sdp: string }).sdp).toMatch(/^a=candidate:.* typ host/m);
    // Nothing from switchboard came before its offer.
    expect(first.events.find((e) => e.json.senderId === 'switchboard')).toBe(offer);
    expect(relay?.stats().connections).toBe(1);
    expect(udpSockets()).toBe(baseline + 1);

    // The stream drops and resumes: the same connection, no new offer.
    first.close();
    const resumed = await events(`${url}/events/live/cam`, first.lastEventId);
    expect(resumed.status).toBe(200);
    const viewer = await post(`${url}/register/live/v1`);
    expect(viewer.status).toBe(200);
    const v1 = await events(`${url}/events/live/v1`);
    await v1.next(ofType('offer', 'switchboard'));
    expect(resumed.events.filter((e) => e.json.type === 'offer')).toEqual([]);
    expect(relay?.stats().connections).toBe(2);

    // A takeover: the old connection goes at once, the new one comes with the new stream, offer first.
    await post(`${url}/register/live/cam`);
    await settles(() => relay?.stats().connections ?? -1, 1);
    const again = await events(`${url}/events/live/cam`);
    const newOffer = await again.next(ofType('offer', 'switchboard'));
    expect(again.events.find((e) => e.json.senderId === 'switchboard')).toBe(newOffer);
    expect(relay?.stats().connections).toBe(2);

    // Everyone leaves: every socket is given back.
    for (let i = 0; i < 10; i++) await fetch(`${url}/session/idle-${i}`, { method: 'DELETE' });
    await fetch(`${url}/session/live`, { method: 'DELETE' });
    expect(relay?.stats()).toMatchObject({ sessions: 0, connections: 0 });
    await settles(udpSockets, baseline);
  });
});

describe('RelayEngine.reachable, the one entry point that allocates', () => {
  test('a joined peer gets its connection once, however often it is reached; a peer that never joined gets one with the role given', async () => {
    const sent: string[] = [];
    const engine = new RelayEngine(defaultConfig(), { clock: new ManualClock(), log: () => {}, outbox: (s, p, type) => sent.push(`${s}/${p} ${type}`) > 0 });
    try {
      engine.joined('s', 'cam', 'publisher');
      expect(engine.stats().connections).toBe(0);
      expect(engine.reachable('s', 'cam')).toBe(true);
      expect(engine.reachable('s', 'cam')).toBe(false);
      // Not joined, no role: nothing to allocate for.
      expect(engine.reachable('s', 'stranger')).toBe(false);
      // A peer whose signalling is its own HTTP exchange (WHIP, WHEP) is allocated with its role.
      expect(engine.reachable('s', 'whep-1', 'viewer')).toBe(true);
      expect(engine.stats()).toMatchObject({ connections: 2, viewers: 1 });
      await settles(() => sent.filter((line) => line.endsWith(' offer')).length, 2);
      expect(sent.filter((line) => line.endsWith(' offer'))).toEqual(['s/cam offer', 's/whep-1 offer']);
      engine.left('s', 'whep-1');
      expect(engine.stats().connections).toBe(1);
    } finally {
      engine.shutdown();
    }
  });
});

describe("RelayEngine.offerNow, the server's offer for a registration's answer", () => {
  test('the first offer goes to the caller, not the mailbox; past the wait, to the mailbox; nothing for a peer with a connection or none', async () => {
    const sent: string[] = [];
    const clock = new ManualClock();
    const engine = new RelayEngine(defaultConfig(), { clock, log: () => {}, outbox: (s, p, type) => sent.push(`${s}/${p} ${type}`) > 0 });
    try {
      engine.joined('s', 'v1', 'viewer');
      const offer = (await engine.offerNow('s', 'v1', 1000)) as { type: string; sdp: string };
      expect(offer.type).toBe('offer');
      expect(offer.sdp.match(/^a=sendonly/gm)?.length).toBe(2);
      expect(engine.stats().connections).toBe(1);
      // Its stream opening later makes nothing new, and a second call has nothing to give.
      expect(engine.reachable('s', 'v1')).toBe(false);
      expect(await engine.offerNow('s', 'v1', 1000)).toBeUndefined();
      expect(await engine.offerNow('s', 'stranger', 1000)).toBeUndefined();
      expect(await engine.offerNow('elsewhere', 'v1', 1000)).toBeUndefined();
      // The wait runs out before the offer is made: the answer goes without it, the offer to the mailbox.
      engine.joined('s', 'v2', 'viewer');
      const late = engine.offerNow('s', 'v2', 1000);
      clock.advance(1000);
      expect(await late).toBeUndefined();
      await settles(() => sent.length, 1);
      expect(sent).toEqual(['s/v2 offer']);
    } finally {
      engine.shutdown();
    }
  });
});

describe('a WebSocket is an event stream too', () => {
  const { listen } = serversPerTest();

  test("the connection is made when the peer's socket opens, and the offer comes over it", async () => {
    const running = listen();
    const { url } = running;
    await post(`${url}/register/ws/cam?mode=relay`);
    await running.relay?.ready;
    expect(running.relay?.stats().connections).toBe(0);
    const socket = await openSocket(`${url}/ws/ws/cam`);
    try {
      const offer = await socket.next((e) => e.type === 'offer' && e.senderId === 'switchboard');
      expect((offer.payload as { sdp: string }).sdp).toStartWith('v=0');
      expect(running.relay?.stats().connections).toBe(1);
    } finally {
      socket.close();
    }
  });
});

describe('relay peers per process and per address', () => {
  const from = (ip: string) => ({ 'x-forwarded-for': ip });

  test('past MAX_RELAY_PEERS a 503 relay_full, past MAX_RELAY_PEERS_PER_IP a 429; leaving, timing out and closing give places back, a takeover keeps its own', async () => {
    const clock = new ManualClock();
    const a = app({ maxRelayPeers: 3, maxRelayPeersPerIp: 2, trustProxy: 1 }, clock);
    const capacity = a.relayCapacity;
    const register = (path: string, ip: string) => req(a.app, 'POST', `/register/${path}`, undefined, from(ip));
    expect((await register('r/cam?mode=relay', '10.0.0.1')).status).toBe(200);
    expect((await register('r/v1', '10.0.0.1')).status).toBe(200);
    const perIp = await register('r/v2', '10.0.0.1');
    expect(perIp.status).toBe(429);
    expect(perIp.body.error).toBe('too_many_relay_peers');
    expect(perIp.body.message).toContain('MAX_RELAY_PEERS_PER_IP');
    expect((await register('r/v2', '10.0.0.2')).status).toBe(200);
    const full = await register('other/cam?mode=relay', '10.0.0.3');
    expect(full.status).toBe(503);
    expect(full.body.error).toBe('relay_full');
    expect(full.body.message).toContain('MAX_RELAY_PEERS');
    expect(Number(full.headers.get('retry-after'))).toBeGreaterThan(0);
    // Mesh sessions take no place.
    expect((await register('mesh/p', '10.0.0.3')).status).toBe(200);
    // A takeover from the same address keeps its place; from another, it moves there.
    expect((await register('r/v1', '10.0.0.1')).status).toBe(200);
    expect((await register('r/v1', '10.0.0.3')).status).toBe(200);
    expect(capacity?.size).toBe(3);
    expect([capacity?.heldBy('10.0.0.1'), capacity?.heldBy('10.0.0.3')]).toEqual([1, 1]);
    // Leaving gives the place back.
    expect((await req(a.app, 'DELETE', '/register/r/v2')).status).toBe(200);
    expect((await register('other/cam?mode=relay', '10.0.0.4')).status).toBe(200);
    // Closing a session gives back all of its places, timing out each peer's.
    expect((await req(a.app, 'DELETE', '/session/other')).status).toBe(200);
    expect(capacity?.size).toBe(2);
    clock.advance(defaultConfig().peerTimeoutMs);
    expect(capacity?.size).toBe(0);
    expect(capacity?.heldBy('10.0.0.1')).toBe(0);
    for (let i = 0; i < 3; i++) expect((await register(`s${i}/cam?mode=relay`, '10.0.0.5')).status).toBe(i < 2 ? 200 : 429);
  });

  test('a RELAY_PORT_RANGE with fewer ports than MAX_RELAY_PEERS is the limit: one port per connection', async () => {
    const a = app({ relayPortRange: '40000-40001' });
    expect(a.relayCapacity?.limit).toBe(2);
    expect((await req(a.app, 'POST', '/register/r/cam?mode=relay')).status).toBe(200);
    expect((await req(a.app, 'POST', '/register/r/v1')).status).toBe(200);
    expect((await req(a.app, 'POST', '/register/r/v2')).body).toMatchObject({ error: 'relay_full', message: expect.stringContaining('RELAY_PORT_RANGE') });
  });
});

describe('RELAY_MODE', () => {
  const JWT_SECRET = 'relay-mode-secret-at-least-32-characters';
  const jwt = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(new TextEncoder().encode(JWT_SECRET));
  const ADMIN = { authorization: `Bearer ${'a'.repeat(16)}` };

  test('unset, it follows AUTH_MODE: open with open, admin with token and jwt; a value not in the list is refused', () => {
    const run = (env: Record<string, string>) => {
      const command = loadConfig([], env);
      if (command.kind !== 'run') throw new Error('expected a run');
      return relayMode(command.config);
    };
    expect(run({})).toBe('open');
    expect(run({ AUTH_MODE: 'token' })).toBe('admin');
    expect(run({ AUTH_MODE: 'jwt', JWT_SECRET })).toBe('admin');
    expect(run({ AUTH_MODE: 'token', RELAY_MODE: 'open' })).toBe('open');
    expect(run({ RELAY_MODE: 'off' })).toBe('off');
    expect(() => run({ RELAY_MODE: 'anyone' })).toThrow('RELAY_MODE');
  });

  test('admin (the default with AUTH_MODE=token): the admin API creates relay sessions, ?mode=relay does not; peers join the one created', async () => {
    const a = app({ authMode: 'token', adminToken: 'a'.repeat(16) });
    const refused = await req(a.app, 'POST', '/register/cam/dev?mode=relay');
    expect(refused.status).toBe(403);
    expect(refused.body.message).toContain('RELAY_MODE=admin');
    expect((await req(a.app, 'POST', '/sessions', { sessionId: 'cam', mode: 'relay' }, ADMIN)).status).toBe(201);
    expect((await req(a.app, 'POST', '/register/cam/dev?mode=relay')).body).toMatchObject({ mode: 'relay', role: 'publisher' });
    expect((await req(a.app, 'POST', '/register/cam/v1')).body.mode).toBe('relay');
  });

  test('admin with JWTs: a "relay": true claim creates a relay session, a JWT without it joins one only', async () => {
    const a = app({ authMode: 'jwt', jwtSecret: JWT_SECRET });
    const bearer = async (claims: Record<string, unknown>) => ({ authorization: `Bearer ${await jwt(claims)}` });
    const plain = await req(a.app, 'POST', '/register/cam/dev?mode=relay', undefined, await bearer({ session: 'cam', peer: 'dev', role: 'publisher' }));
    expect(plain.status).toBe(403);
    expect(plain.body.message).toContain('"relay" claim');
    const allowed = await req(a.app, 'POST', '/register/cam/dev?mode=relay', undefined, await bearer({ session: 'cam', peer: 'dev', role: 'publisher', relay: true }));
    expect(allowed.body).toMatchObject({ mode: 'relay', role: 'publisher' });
    expect((await req(a.app, 'POST', '/register/cam/v1', undefined, await bearer({ session: 'cam', peer: 'v1', role: 'viewer' }))).body.mode).toBe('relay');
    const odd = await req(a.app, 'POST', '/register/x/dev?mode=relay', undefined, await bearer({ session: 'x', peer: 'dev', role: 'publisher', relay: 'yes' }));
    expect(odd.status).toBe(401);
  });

  test('open with AUTH_MODE=token keeps anonymous relay sessions; off refuses them everywhere, naming RELAY_MODE', async () => {
    const open = app({ authMode: 'token', relayMode: 'open' });
    expect((await req(open.app, 'POST', '/register/cam/dev?mode=relay')).body.mode).toBe('relay');
    const off = app({ relayMode: 'off', adminToken: 'a'.repeat(16) });
    expect(off.relay).toBeUndefined();
    for (const res of [await req(off.app, 'POST', '/register/cam/dev?mode=relay'), await req(off.app, 'POST', '/sessions', { mode: 'relay' }, ADMIN)]) {
      expect(res.status).toBe(400);
      expect(res.body.message).toContain('RELAY_MODE=off');
    }
    expect((await req(off.app, 'POST', '/register/m/p')).body.mode).toBe('mesh');
  });
});
