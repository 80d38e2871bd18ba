// The client library's signalling under Bun, as a device's software uses it (no media): imported through
// the package entry `switchboard/client`, against a real listener, with a real SSE client as the other peer.
import { afterEach, describe, expect, test } from 'bun:test';
import { ApiError, connect, describeError, type Signal, type Signalling, type StreamState, version } from 'switchboard/client';
import pkg from '../../package.json';
import { turnRestCredential } from '../../src/ice/ice-servers';
import { post, serversPerTest, until } from '../helpers';
import { ofType, openEvents } from '../sse-client';
import { startTcpProxy, type TcpProxy } from './tcp-proxy';

/** Reconnects wait for the library's 1 s backoff; a loaded machine is slower. */
const TEST_TIMEOUT = 20_000;

const { listen, streams } = serversPerTest();
const peers: Signalling[] = [];
const proxies: TcpProxy[] = [];
afterEach(async () => {
  for (const peer of peers.splice(0)) peer.end();
  for (const proxy of proxies.splice(0)) await proxy.stop();
});

/** What a Signalling reported, as it happened. */
function record(peer: Signalling) {
  const signals: Signal[] = [];
  const states: StreamState[] = [];
  const registered: string[][] = [];
  peer.on('signal', (s) => void signals.push(s));
  peer.on('stream', ({ state }) => void states.push(state));
  peer.on('registered', ({ peers }) => void registered.push(peers));
  return { signals, states, registered };
}

/**
 * A relay session `live` with a publisher `cam` streaming (the relay engine is loaded once its offer has
 * come over its stream), and a library viewer `v1` of it, recorded, not yet registered.
 */
async function liveRelayViewer(url: string) {
  await post(`${url}/register/live/cam?mode=relay`);
  const cam = await openEvents(`${url}/events/live/cam`);
  streams.push(cam);
  await cam.next(ofType('offer', 'switchboard'));
  const viewer = device(url, 'live', 'v1', { role: 'view' });
  const seen = record(viewer);
  /** The publisher leaves; resolves once the viewer has its peer-left. */
  const publisherLeaves = async () => {
    await fetch(`${url}/register/live/cam`, { method: 'DELETE' });
    await until(() => seen.signals.some((e) => e.type === 'peer-left'));
  };
  return { viewer, seen, publisherLeaves };
}

const device = (server: string, session: string, peer: string, extra: Partial<Parameters<typeof connect>[0]> = {}) => {
  const signalling = connect({ server, session, peer, transport: 'ws', ...extra });
  peers.push(signalling);
  return signalling;
};

describe('the client library under Bun', () => {
  test(
    'its version is the server’s',
    () => {
      expect(version).toBe(pkg.version);
    },
    TEST_TIMEOUT,
  );

  test(
    'register, events in order, a message each way, leave: the other peer sees it all over SSE',
    async () => {
      const { url } = listen();
      const dev = device(url, 'fleet', 'dashcam-7', { role: 'publish' });
      const seen = record(dev);
      expect(await dev.register()).toEqual([]);
      dev.open();
      await until(() => dev.streamState === 'open');

      const ops = await post(`${url}/register/fleet/ops`);
      const opsEvents = await openEvents(`${url}/events/fleet/ops`);
      streams.push(opsEvents);
      await until(() => seen.signals.some((s) => s.type === 'new-peer' && s.senderId === 'ops'));

      await dev.send('offer', { type: 'offer', sdp: 'v=0' }, 'ops');
      expect((await opsEvents.next(ofType('offer', 'dashcam-7'))).json.payload).toEqual({ type: 'offer', sdp: 'v=0' });
      expect((await post(`${url}/message/fleet/ops`, { type: 'answer', payload: { sdp: 'v=1' }, target: 'dashcam-7' })).status).toBe(200);
      await until(() => seen.signals.some((s) => s.type === 'answer'));
      expect(seen.signals.map((s) => [s.type, s.senderId])).toEqual([
        ['new-peer', 'ops'],
        ['answer', 'ops'],
      ]);
      expect(ops.body.peers).toEqual(['dashcam-7']);

      dev.leave();
      await opsEvents.next(ofType('peer-left', 'dashcam-7'));
      expect(dev.streamState).toBe('closed');
      expect((await fetch(`${url}/events/fleet/dashcam-7`)).status).toBe(404);
    },
    TEST_TIMEOUT,
  );

  test(
    'candidates sent together go in one POST, in order with the messages around them; a refused one rejects alone',
    async () => {
      const { url } = listen();
      const dev = device(url, 'batch', 'dev', { batchMs: 50 });
      await dev.register();
      await post(`${url}/register/batch/ops`);
      const opsEvents = await openEvents(`${url}/events/batch/ops`);
      streams.push(opsEvents);
      // Counted where the library sends them: its socket is not open, so each message goes by POST.
      const posts: unknown[] = [];
      const realFetch = globalThis.fetch;
      globalThis.fetch = Object.assign((input: string | URL | Request, init?: RequestInit) => {
        if (String(input).includes('/message/')) posts.push(JSON.parse(String(init?.body)));
        return realFetch(input, init);
      }, realFetch);
      try {
        const candidate = (n: number) => ({ candidate: `candidate:${n}`, sdpMid: '0' });
        const sends = [
          dev.send('ice-candidate', candidate(1), 'ops'),
          dev.send('ice-candidate', candidate(2), 'ghost'),
          dev.send('ice-candidate', candidate(3), 'ops'),
          dev.send('offer', { type: 'offer', sdp: 'v=0' }, 'ops'),
          dev.send('ice-candidate', candidate(4), 'ops'),
        ];
        const settled = await Promise.allSettled(sends);
        expect(settled.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
        const refused = (settled[1] as PromiseRejectedResult).reason;
        expect(refused).toBeInstanceOf(ApiError);
        expect([refused.status, refused.code]).toEqual([404, 'target_not_found']);
        // Three candidates waiting went before the offer, as one batch; the offer alone; the last candidate alone.
        expect(posts.map((p) => (Array.isArray(p) ? p.length : 'single'))).toEqual([3, 'single', 'single']);
        const read: unknown[] = [];
        for (let i = 0; i < 4; i++) read.push((await opsEvents.next((e) => e.json.senderId === 'dev')).json.payload);
        expect(read).toEqual([candidate(1), candidate(3), { type: 'offer', sdp: 'v=0' }, candidate(4)]);
      } finally {
        globalThis.fetch = realFetch;
      }
    },
    TEST_TIMEOUT,
  );

  test(
    'a cut socket resumes where it stopped: what was sent meanwhile arrives once, nothing is registered again',
    async () => {
      const { url } = listen();
      const proxy = await startTcpProxy(url);
      proxies.push(proxy);
      const dev = device(proxy.url, 'cut', 'dev');
      const seen = record(dev);
      await dev.register();
      dev.open();
      await until(() => dev.streamState === 'open');
      await post(`${url}/register/cut/ops`);
      await until(() => seen.signals.length === 1);

      proxy.cut();
      await until(() => dev.streamState === 'reconnecting');
      // Sent while the device is away: held for its resume (202 once the server saw it go).
      for (const n of [1, 2, 3]) expect([200, 202]).toContain((await post(`${url}/message/cut/ops`, { type: 'note', payload: n, target: 'dev' })).status);
      await until(() => seen.signals.length === 4);

      expect(seen.signals.map((s) => s.payload ?? s.type)).toEqual(['new-peer', 1, 2, 3]);
      expect(seen.states).toEqual(['connecting', 'open', 'reconnecting', 'open']);
      expect(dev.resumes).toBe(1);
      expect(dev.reRegistrations).toBe(0);
      expect(seen.registered).toEqual([]);
      // The messages it sends after the resume still reach the other peer.
      const opsEvents = await openEvents(`${url}/events/cut/ops`);
      streams.push(opsEvents);
      await dev.send('hello', 'again', 'ops');
      expect((await opsEvents.next(ofType('hello', 'dev'))).json.payload).toBe('again');
    },
    TEST_TIMEOUT,
  );

  test(
    'a peer the server forgot registers again by itself, and says so',
    async () => {
      const { url } = listen({ authMode: 'token' });
      const proxy = await startTcpProxy(url);
      proxies.push(proxy);
      const dev = device(proxy.url, 'gone', 'dev');
      const seen = record(dev);
      await dev.register();
      dev.open();
      await until(() => dev.streamState === 'open');
      await post(`${url}/register/gone/ops`);
      await until(() => seen.signals.length === 1);
      // The session is closed behind its back while it is away; the publisher's token ends it.
      proxy.cut();
      await until(() => dev.streamState === 'reconnecting');
      expect((await fetch(`${url}/session/gone`, { method: 'DELETE', headers: { authorization: `Bearer ${dev.peerToken}` } })).status).toBe(200);
      await until(() => seen.registered.length === 1);
      expect(seen.registered[0]).toEqual([]);
      expect(dev.reRegistrations).toBe(1);
      await until(() => dev.streamState === 'open');
    },
    TEST_TIMEOUT,
  );

  test(
    "the registration's answer brings the peer's TURN credentials, those GET /iceServers gives with its token",
    async () => {
      const { url } = listen({ authMode: 'token', iceUrls: ['turn:127.0.0.1:3479?transport=udp'], turnSecret: 'a-turn-secret', turnTtlS: 600 });
      const dev = device(url, 'ice', 'dev');
      expect(dev.registeredIceServers).toBeUndefined();
      const before = Math.floor(Date.now() / 1000);
      await dev.register();
      const given = dev.registeredIceServers;
      if (!given?.username) throw new Error(`no TURN credentials in the registration's answer: ${JSON.stringify(given)}`);
      expect(given.urls).toEqual(['turn:127.0.0.1:3479?transport=udp']);
      // <expiry>:<peer>, the credential coturn's use-auth-secret checks for it; no ttl (not an RTCIceServer field).
      const [expiry, peer] = given.username.split(':');
      expect(peer).toBe('dev');
      expect(Number(expiry)).toBeWithin(before + 600, Math.floor(Date.now() / 1000) + 601);
      expect(given).toEqual({ urls: given.urls, ...turnRestCredential('a-turn-secret', 'dev', Number(expiry)) });
      const fetched = await dev.iceServers();
      expect(fetched.username?.endsWith(':dev')).toBe(true);
    },
    TEST_TIMEOUT,
  );

  test(
    'GET /iceServers comes after the registration and carries its peer token: TURN credentials name the peer',
    async () => {
      const { url } = listen({ authMode: 'token', iceUrls: ['turn:127.0.0.1:3479?transport=udp'], turnSecret: 'a-turn-secret' });
      const sent: { path: string; authorization: string | null }[] = [];
      const realFetch = globalThis.fetch;
      globalThis.fetch = Object.assign(
        (input: string | URL | Request, init?: RequestInit) => {
          const path = new URL(String(input instanceof Request ? input.url : input)).pathname;
          sent.push({ path, authorization: new Headers(init?.headers).get('authorization') });
          return realFetch(input, init);
        },
        { preconnect: realFetch.preconnect },
      );
      try {
        const dev = device(url, 'ice', 'dev');
        await dev.register();
        const token = dev.peerToken;
        expect(token).toBeString();
        const ice = await dev.iceServers();
        // Outside AUTH_MODE=open the server hands out TURN credentials only to a peer proven by its token.
        expect(ice.urls).toEqual(['turn:127.0.0.1:3479?transport=udp']);
        expect(ice.username).toEndWith(':dev');
        expect(ice.credential).toBeString();
        expect(sent).toEqual([
          { path: '/register/ice/dev', authorization: null },
          { path: '/iceServers', authorization: `Bearer ${token}` },
        ]);
      } finally {
        globalThis.fetch = realFetch;
      }
    },
    TEST_TIMEOUT,
  );

  test(
    'a join token registers the invited peer; without it the server refuses, in words',
    async () => {
      const admin = 'admin-token-0123456789';
      const { url } = listen({ authMode: 'token', adminToken: admin });
      const created = await fetch(`${url}/sessions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        body: JSON.stringify({ sessionId: 'live-42', peers: [{ peerId: 'dashcam-7', role: 'publisher' }] }),
      });
      const joinToken = ((await created.json()) as { peers: { token: string }[] }).peers[0]?.token;
      const refused = device(url, 'live-42', 'dashcam-7');
      const error = await refused.register().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ApiError);
      expect(describeError(error)).toMatch(/^The server refused: .+ \((unauthorized|forbidden)\)\.$/);

      const invited = device(url, 'live-42', 'dashcam-7', { token: joinToken });
      expect(await invited.register()).toEqual([]);
      // From here on its requests carry the peer token it was given, not the join token.
      expect(invited.peerToken).toBeString();
      expect(invited.peerToken).not.toBe(joinToken);
      invited.open();
      await until(() => invited.streamState === 'open');
    },
    TEST_TIMEOUT,
  );

  test(
    "in a relay session the registration brings switchboard's offer, once, and the stream does not carry it",
    async () => {
      const { viewer, seen, publisherLeaves } = await liveRelayViewer(listen().url);
      expect(await viewer.register()).toEqual(['cam']);
      const offer = viewer.takeOffer();
      expect(offer).toMatchObject({ type: 'offer', senderId: 'switchboard', payload: { type: 'offer' } });
      expect(((offer?.payload as { sdp?: string } | undefined)?.sdp ?? '').match(/^a=sendonly/gm)?.length).toBe(2);
      expect(viewer.takeOffer()).toBeUndefined();
      viewer.open();
      await until(() => viewer.streamState === 'open');
      // The publisher leaves: its peer-left is the viewer's first event; an offer would have come before it.
      await publisherLeaves();
      expect(seen.signals.map((e) => [e.type, e.senderId])).toEqual([['peer-left', 'cam']]);
    },
    TEST_TIMEOUT,
  );

  test(
    "a caller that does not take the registration's offer gets it as the stream's first signal, as it came before",
    async () => {
      const { viewer, seen, publisherLeaves } = await liveRelayViewer(listen().url);
      await viewer.register();
      viewer.open();
      await until(() => seen.signals.length > 0);
      expect(seen.signals[0]).toMatchObject({ type: 'offer', senderId: 'switchboard', payload: { type: 'offer' } });
      await publisherLeaves();
      expect(seen.signals.map((e) => e.type)).toEqual(['offer', 'peer-left']);
    },
    TEST_TIMEOUT,
  );

  test('transport sse where the runtime has no EventSource: a plain error at once', () => {
    expect(typeof EventSource).toBe('undefined');
    expect(() => connect({ server: 'http://127.0.0.1:9', session: 's', peer: 'p', transport: 'sse' })).toThrow("this runtime has no EventSource: use transport 'ws'");
  });
});
