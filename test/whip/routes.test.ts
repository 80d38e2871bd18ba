// WHIP and WHEP as HTTP: every answer the routes give, against real offers (werift) and a real relay.
import { afterEach, describe, expect, test } from 'bun:test';
import { SignJWT } from 'jose';
import { createApp } from '../../src/app';
import type { Config } from '../../src/config';
import type { SessionSnapshot } from '../../src/sessions/backend';
import { defaultConfig, ManualClock, serversPerTest } from '../helpers';
import { ofType, openEvents } from '../sse-client';
import { clientOffer, closeClients, connect, FRAGMENT, SDP, until } from './clients';

type App = ReturnType<typeof createApp>;
const apps: App[] = [];
afterEach(async () => {
  await closeClients();
  for (const app of apps.splice(0)) app.signalling.shutdown();
});

function whipApp(config: Partial<Config> = {}, clock?: ManualClock): App {
  const app = createApp(defaultConfig({ iceUrls: ['stun:127.0.0.1:3478', 'turn:127.0.0.1:3478?transport=udp'], turnSecret: 'turn-secret', ...config }), clock ? { clock } : {});
  apps.push(app);
  return app;
}

const snap = (app: App, sessionId: string) => app.signalling.snapshot(sessionId) as SessionSnapshot | undefined;

function call(app: App, method: string, path: string, init: { body?: string; type?: string; headers?: Record<string, string> } = {}): Promise<Response> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.type) headers['content-type'] = init.type;
  return Promise.resolve(app.app.handle(new Request(`http://localhost${path}`, { method, headers, body: init.body })));
}

const post = (app: App, path: string, sdp: string, headers: Record<string, string> = {}) => call(app, 'POST', path, { body: sdp, type: SDP, headers });
const patch = (app: App, path: string, fragment: string, headers: Record<string, string> = {}) => call(app, 'PATCH', path, { body: fragment, type: FRAGMENT, headers });

async function errorOf(response: Response): Promise<{ status: number; error: string; message: string }> {
  expect(response.headers.get('content-type')).toBe('application/json');
  return { status: response.status, ...((await response.json()) as { error: string; message: string }) };
}

/** A WHIP publisher's POST, answered. */
async function publish(app: App, session: string, query = '', headers: Record<string, string> = {}) {
  const { pc, sdp } = await clientOffer('sendonly');
  const response = await post(app, `/whip/${session}${query}`, sdp, headers);
  expect(response.status).toBe(201);
  return { pc, response, location: response.headers.get('location') ?? '', etag: response.headers.get('etag') ?? '', answer: await response.text() };
}

const TRICKLE =
  'a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n';
const _RESTART = 'a=ice-ufrag:wxyz\r\na=ice-pwd:zyxwvutsrqponmlkjihgfedc\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n';

describe('POST /whip and /whep', () => {
  test('201 with the answer, Location, ETag, Accept-Patch and one Link per ICE server (TURN with its credentials); the client connects', async () => {
    const app = whipApp();
    const { pc, response, location, etag, answer } = await publish(app, 'cam', '?peer=dashcam-1');
    expect(response.headers.get('content-type')).toBe(SDP);
    expect(location).toMatch(/^\/whip\/cam\/[A-Za-z0-9_-]{22,}$/);
    expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
    expect(response.headers.get('accept-patch')).toBe(FRAGMENT);
    const links = response.headers.get('link') ?? '';
    expect(links).toContain('<stun:127.0.0.1:3478>; rel="ice-server"');
    expect(links).toMatch(/<turn:127\.0\.0\.1:3478\?transport=udp>; rel="ice-server"; username="\d+:dashcam-1"; credential="[A-Za-z0-9+/=]+"; credential-type="password"/);
    // Candidates gathered before answering: a client that does not trickle connects too.
    expect(answer).toMatch(/^a=candidate:/m);
    expect(answer).toMatch(/^a=recvonly$/m);
    await connect(pc, answer);
    // Its media connection stands for its event stream.
    await until(() => snap(app, 'cam')?.peers[0]?.streaming === true, 'the publisher counts as streaming');
    expect(snap(app, 'cam')).toMatchObject({ mode: 'relay', peers: [{ id: 'dashcam-1', role: 'publisher', streaming: true }] });
  });

  test('two resources get different ids, each of 128 bits at least; without ?peer= the id is generated', async () => {
    const app = whipApp();
    const one = await publish(app, 'a');
    const two = await publish(app, 'b');
    expect(one.location.split('/')[3]).not.toBe(two.location.split('/')[3]);
    expect(Buffer.from(one.location.split('/')[3] ?? '', 'base64url').length).toBeGreaterThanOrEqual(16);
    expect(snap(app, 'a')?.peers).toHaveLength(1);
  });

  test('WHEP without a publisher yet: 201, a viewer of the new relay session (video starts with the publisher)', async () => {
    const app = whipApp();
    const { sdp } = await clientOffer('recvonly');
    const response = await post(app, '/whep/waiting?peer=screen', sdp);
    expect(response.status).toBe(201);
    expect(response.headers.get('location')).toMatch(/^\/whep\/waiting\/[A-Za-z0-9_-]{22,}$/);
    expect(await response.text()).toMatch(/^a=sendonly$/m);
    expect(snap(app, 'waiting')).toMatchObject({ mode: 'relay', peers: [{ id: 'screen', role: 'viewer' }] });
    // The publisher that comes next is the session's publisher, whoever came first.
    await publish(app, 'waiting', '?peer=cam');
    expect(snap(app, 'waiting')?.peers.map((p) => [p.id, p.role])).toEqual([
      ['screen', 'viewer'],
      ['cam', 'publisher'],
    ]);
  });

  test('audio-only and video-only publishers are answered, with one media section each', async () => {
    const app = whipApp();
    for (const kinds of [['audio'], ['video']] as const) {
      const { sdp } = await clientOffer('sendonly', [...kinds]);
      const response = await post(app, `/whip/only-${kinds[0]}`, sdp);
      expect(response.status).toBe(201);
      expect((await response.text()).match(/^m=/gm)).toHaveLength(1);
    }
  });

  test('409: a second publisher, with the publisher named; a mesh session, saying why', async () => {
    const app = whipApp();
    await publish(app, 'taken', '?peer=first');
    const { sdp } = await clientOffer('sendonly');
    expect(await errorOf(await post(app, '/whip/taken?peer=second', sdp))).toMatchObject({ status: 409, error: 'publisher_exists', message: expect.stringContaining('first') });
    await app.app.handle(new Request('http://localhost/register/mesh/p1', { method: 'POST' }));
    expect(await errorOf(await post(app, '/whip/mesh', sdp))).toMatchObject({ status: 409, error: 'mode_conflict', message: expect.stringContaining('mesh session') });
    const whep = await clientOffer('recvonly');
    expect((await errorOf(await post(app, '/whep/mesh', whep.sdp))).status).toBe(409);
  });

  test('the caps of every relay peer hold: MAX_RELAY_PEERS full → 503 relay_full with Retry-After; RELAY_MODE=off → 400', async () => {
    const app = whipApp({ maxRelayPeers: 1 });
    await publish(app, 'capped', '?peer=cam');
    const whep = await clientOffer('recvonly');
    const full = await post(app, '/whep/capped?peer=screen', whep.sdp);
    expect(await errorOf(full)).toMatchObject({ status: 503, error: 'relay_full' });
    expect(full.headers.get('retry-after')).toBeTruthy();
    expect(snap(app, 'capped')?.peers.map((p) => p.id)).toEqual(['cam']);
    const off = whipApp({ relayMode: 'off' });
    const { sdp } = await clientOffer('sendonly');
    expect(await errorOf(await post(off, '/whip/none', sdp))).toMatchObject({ status: 400, message: expect.stringContaining('RELAY_MODE') });
  });

  test('415 for another content type, 400 naming the reason for an SDP that is not one or has no usable codec, 413 past 64 KiB', async () => {
    const app = whipApp({ relayVideoCodecs: ['vp8'] });
    const { sdp } = await clientOffer('sendonly');
    expect(await errorOf(await call(app, 'POST', '/whip/s', { body: sdp, type: 'application/json' }))).toMatchObject({ status: 415, error: 'unsupported_media_type' });
    expect(await errorOf(await call(app, 'POST', '/whip/s', { body: sdp }))).toMatchObject({ status: 415 });
    expect(await errorOf(await post(app, '/whip/s', 'hello'))).toMatchObject({ status: 400, error: 'invalid_sdp', message: expect.stringContaining('v=0') });
    const pcmuOnly = sdp
      .replace(/^m=audio (\d+) (\S+) .*$/m, 'm=audio $1 $2 0')
      .replace(/^a=rtpmap:(?!0 ).*\r\n/gm, '')
      .replace(/^m=video.*\r\n(?:(?!m=).*\r\n)*/m, '');
    expect(await errorOf(await post(app, '/whip/s', pcmuOnly))).toMatchObject({ status: 400, error: 'invalid_sdp', message: expect.stringContaining('m=audio offers no codec') });
    const h264Only = sdp.replace(/VP8\/90000/g, 'H264/90000');
    expect(await errorOf(await post(app, '/whip/s', h264Only))).toMatchObject({
      status: 400,
      message: expect.stringContaining('m=video offers no codec this server relays: it takes VP8 video'),
    });
    const noIce = sdp.replace(/^a=ice-(ufrag|pwd):.*\r\n/gm, '');
    expect(await errorOf(await post(app, '/whip/s', noIce))).toMatchObject({ status: 400, message: expect.stringContaining('ice-ufrag') });
    // A WHEP offer that sends, a WHIP offer that receives: the wrong door.
    expect(await errorOf(await post(app, '/whep/s', sdp))).toMatchObject({ status: 400, message: expect.stringContaining('WHEP client receives') });
    expect(await errorOf(await post(app, '/whip/s', (await clientOffer('recvonly')).sdp))).toMatchObject({ status: 400, message: expect.stringContaining('WHIP client sends') });
    expect(await errorOf(await post(app, '/whip/s', `${sdp}${'a=x\r\n'.repeat(20_000)}`))).toMatchObject({ status: 413 });
    // Nothing was registered by any of these.
    expect(snap(app, 's')).toBeUndefined();
  });

  test('a cluster (REDIS_URL) answers no WHIP or WHEP offer: 400 saying so', async () => {
    const app = whipApp({ redisUrl: 'redis://127.0.0.1:1' });
    const { sdp } = await clientOffer('sendonly');
    expect(await errorOf(await post(app, '/whip/s', sdp))).toMatchObject({ status: 400, message: expect.stringContaining('REDIS_URL') });
    await app.signalling.close();
  });
});

describe('OPTIONS and other methods', () => {
  test('OPTIONS: 204 with Accept-Post and the ICE servers, without credentials; a CORS preflight gets the CORS answer, PATCH and If-Match allowed', async () => {
    const app = whipApp();
    for (const door of ['whip', 'whep']) {
      const options = await call(app, 'OPTIONS', `/${door}/s`);
      expect(options.status).toBe(204);
      expect(options.headers.get('accept-post')).toBe(SDP);
      expect(options.headers.get('link')).toBe('<stun:127.0.0.1:3478>; rel="ice-server", <turn:127.0.0.1:3478?transport=udp>; rel="ice-server"');
      const preflight = await call(app, 'OPTIONS', `/${door}/s/abcdefghijklmnopqrstuv`, {
        headers: { origin: 'https://player.example', 'access-control-request-method': 'PATCH', 'access-control-request-headers': 'if-match, content-type' },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('accept-post')).toBeNull();
      expect(preflight.headers.get('access-control-allow-methods')).toContain('PATCH');
      expect(preflight.headers.get('access-control-allow-headers')).toContain('If-Match');
    }
    // A cross-origin player reads the headers it needs.
    const exposed = (await publish(app, 'x', '', { origin: 'https://player.example' })).response.headers.get('access-control-expose-headers') ?? '';
    for (const header of ['Location', 'ETag', 'Link', 'Accept-Patch']) expect(exposed).toContain(header);
    // Other paths' OPTIONS are answered as before.
    expect((await call(app, 'OPTIONS', '/register/s/p')).status).toBe(204);
  });

  test('405 with Allow for every other method, in the error envelope', async () => {
    const app = whipApp();
    const { location } = await publish(app, 's');
    for (const [method, path, allow] of [
      ['GET', '/whip/s', 'POST, OPTIONS'],
      ['PUT', '/whep/s', 'POST, OPTIONS'],
      ['DELETE', '/whip/s', 'POST, OPTIONS'],
      ['GET', location, 'PATCH, DELETE, OPTIONS'],
      ['POST', location, 'PATCH, DELETE, OPTIONS'],
    ] as const) {
      const response = await call(app, method, path);
      expect(response.headers.get('allow')).toBe(allow);
      expect(await errorOf(response)).toMatchObject({ status: 405, error: 'method_not_allowed' });
    }
  });
});

describe('PATCH and DELETE', () => {
  test('trickled candidates with the ETag: 204; without If-Match: 428; a stale ETag: 412; wrong type: 415; bad fragment: 400', async () => {
    const app = whipApp();
    const { location, etag } = await publish(app, 's');
    const trickled = await patch(app, location, TRICKLE, { 'if-match': etag });
    expect(trickled.status).toBe(204);
    expect(trickled.headers.get('etag')).toBe(etag);
    expect(await errorOf(await patch(app, location, TRICKLE))).toMatchObject({ status: 428, error: 'precondition_required' });
    expect(await errorOf(await patch(app, location, TRICKLE, { 'if-match': '"stale"' }))).toMatchObject({ status: 412, error: 'precondition_failed' });
    expect(await errorOf(await call(app, 'PATCH', location, { body: TRICKLE, type: SDP, headers: { 'if-match': etag } }))).toMatchObject({ status: 415 });
    expect(await errorOf(await patch(app, location, 'a=candidate:nonsense\r\n', { 'if-match': etag }))).toMatchObject({ status: 400, error: 'invalid_sdp' });
    expect(await errorOf(await patch(app, `${location.slice(0, -4)}AAAA`, TRICKLE, { 'if-match': etag }))).toMatchObject({ status: 404, error: 'resource_not_found' });
  });

  test('an ICE restart (If-Match: *): 200 with new credentials and candidates and a new ETag; the old one is stale; the connection comes back', async () => {
    const app = whipApp();
    const { pc, location, etag, answer } = await publish(app, 's');
    await connect(pc, answer);
    const before = /a=ice-ufrag:(.*)\r\n/.exec(answer)?.[1];
    // The client restarts as a browser would: a new offer of its own, sent as a fragment.
    await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
    const local = pc.localDescription?.sdp ?? '';
    const fragment = `a=ice-ufrag:${/a=ice-ufrag:(.*)\r\n/.exec(local)?.[1]}\r\na=ice-pwd:${/a=ice-pwd:(.*)\r\n/.exec(local)?.[1]}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n`;
    const restarted = await patch(app, location, fragment, { 'if-match': '*' });
    expect(restarted.status).toBe(200);
    expect(restarted.headers.get('content-type')).toBe(FRAGMENT);
    const newTag = restarted.headers.get('etag') ?? '';
    expect(newTag).not.toBe(etag);
    const server = await restarted.text();
    const ufrag = /a=ice-ufrag:(.*)\r\n/.exec(server)?.[1];
    expect(ufrag).toBeDefined();
    expect(ufrag).not.toBe(before);
    expect(server).toMatch(/^a=candidate:/m);
    expect(await errorOf(await patch(app, location, TRICKLE, { 'if-match': etag }))).toMatchObject({ status: 412 });
    expect((await patch(app, location, TRICKLE, { 'if-match': newTag })).status).toBe(204);
    // The client applies the server's new credentials, as WHIP clients do, and ICE reconnects.
    const remote = (pc.remoteDescription?.sdp ?? '')
      .replace(/a=ice-ufrag:.*\r\n/g, `a=ice-ufrag:${ufrag}\r\n`)
      .replace(/a=ice-pwd:.*\r\n/g, `a=ice-pwd:${/a=ice-pwd:(.*)\r\n/.exec(server)?.[1]}\r\n`)
      .replace(/a=candidate:.*\r\n/g, '')
      .replace(/(m=.*\r\n)/g, `$1${[...server.matchAll(/(a=candidate:.*\r\n)/g)].map((m) => m[1]).join('')}`);
    await pc.setRemoteDescription({ type: 'answer', sdp: remote });
    await until(() => pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed', 'ICE reconnects after the restart');
    expect(pc.connectionState).toBe('connected');
  });

  test('DELETE: 200, the publisher leaves (an SSE viewer gets new-peer, then peer-left) and the resource is gone', async () => {
    const { listen, streams } = serversPerTest();
    const server = listen({ iceUrls: ['stun:127.0.0.1:3478'] });
    const viewer = await fetch(`${server.url}/register/live/v1?mode=relay&role=view`, { method: 'POST' });
    expect(viewer.status).toBe(200);
    const events = await openEvents(`${server.url}/events/live/v1`);
    streams.push(events);
    const { sdp } = await clientOffer('sendonly');
    const created = await fetch(`${server.url}/whip/live?peer=cam`, { method: 'POST', headers: { 'content-type': SDP }, body: sdp });
    expect(created.status).toBe(201);
    await events.next(ofType('new-peer', 'cam'));
    const location = created.headers.get('location') ?? '';
    const deleted = await fetch(`${server.url}${location}`, { method: 'DELETE' });
    expect(deleted.status).toBe(200);
    await events.next(ofType('peer-left', 'cam'));
    expect((await fetch(`${server.url}${location}`, { method: 'DELETE' })).status).toBe(404);
    expect(snap(server, 'live')?.peers.map((p) => p.id)).toEqual(['v1']);
  });

  test('a peer that never connects leaves after the peer timeout, and its resource with it; a connected one stays', async () => {
    const clock = new ManualClock();
    const app = whipApp({ peerTimeoutMs: 10_000 }, clock);
    const idle = await publish(app, 's', '?peer=idle');
    const { pc, sdp } = await clientOffer('recvonly');
    const viewer = await post(app, '/whep/s?peer=watching', sdp);
    expect(viewer.status).toBe(201);
    await connect(pc, await viewer.text());
    await until(() => snap(app, 's')?.peers.find((p) => p.id === 'watching')?.streaming === true, 'the viewer counts as streaming');
    clock.advance(10_001);
    expect(snap(app, 's')?.peers.map((p) => p.id)).toEqual(['watching']);
    expect(await errorOf(await call(app, 'DELETE', idle.location))).toMatchObject({ status: 404 });
    // Its client vanishes without a DELETE: its consent checks stop, it counts as gone after 30 s, and
    // leaves after the peer timeout.
    await pc.close();
    clock.advance(30_000 + 5000 + 10_001);
    expect(snap(app, 's')).toBeUndefined();
  });
});

describe('access', () => {
  const SECRET = 'a-shared-secret-of-at-least-32-chars!';
  const jwt = (claims: Record<string, unknown>) =>
    new SignJWT({ session: 's', exp: Math.floor(Date.now() / 1000) + 600, ...claims }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET));
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  test('jwt mode: no bearer 401; a viewer JWT on WHIP 403; a publisher JWT that may not create relay sessions 403; one that may: 201 with its peer id; PATCH and DELETE need the same token', async () => {
    const app = whipApp({ authMode: 'jwt', jwtSecret: SECRET });
    const { sdp } = await clientOffer('sendonly');
    const refused = await post(app, '/whip/s', sdp);
    expect(await errorOf(refused)).toMatchObject({ status: 401, error: 'unauthorized' });
    expect(refused.headers.get('www-authenticate')).toContain('Bearer');
    expect(await errorOf(await post(app, '/whip/s', sdp, bearer(await jwt({ peer: 'screen', role: 'viewer' }))))).toMatchObject({ status: 403, error: 'forbidden' });
    // With AUTH_MODE=jwt, RELAY_MODE is admin by default: the JWT must allow creating relay sessions.
    const noRelay = await post(app, '/whip/s', sdp, bearer(await jwt({ peer: 'dashcam-7', role: 'publisher' })));
    expect(await errorOf(noRelay)).toMatchObject({ status: 403, error: 'forbidden' });
    const token = await jwt({ peer: 'dashcam-7', role: 'publisher', relay: true });
    const { location, etag } = await publish(app, 's', '', bearer(token));
    expect(snap(app, 's')?.peers).toEqual([{ id: 'dashcam-7', role: 'publisher', streaming: false }]);
    // A WHEP player with a viewer JWT.
    const whep = await clientOffer('recvonly');
    expect((await post(app, '/whep/s', whep.sdp, bearer(await jwt({ peer: 'screen', role: 'viewer' })))).status).toBe(201);

    expect(await errorOf(await patch(app, location, TRICKLE, { 'if-match': etag }))).toMatchObject({ status: 401 });
    const other = bearer(await jwt({ peer: 'dashcam-7', role: 'publisher', relay: true, jti: 'another' }));
    expect(await errorOf(await patch(app, location, TRICKLE, { 'if-match': etag, ...other }))).toMatchObject({ status: 403 });
    expect(await errorOf(await call(app, 'DELETE', location, { headers: other }))).toMatchObject({ status: 403 });
    expect((await patch(app, location, TRICKLE, { 'if-match': etag, ...bearer(token) })).status).toBe(204);
    expect((await call(app, 'DELETE', location, { headers: bearer(token) })).status).toBe(200);
  });

  test("token mode: an admin session's invite token publishes as its peer; another peer's token, or none, is refused", async () => {
    const app = whipApp({ authMode: 'token', adminToken: 'admin-secret-admin-secret' });
    const created = await app.app.handle(
      new Request('http://localhost/sessions', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer admin-secret-admin-secret' },
        body: JSON.stringify({
          sessionId: 'fleet',
          mode: 'relay',
          peers: [
            { peerId: 'cam', role: 'publisher' },
            { peerId: 'tv', role: 'viewer' },
          ],
        }),
      }),
    );
    expect(created.status).toBe(201);
    const grants = ((await created.json()) as { peers: { peerId: string; token: string }[] }).peers;
    const tokenOf = (id: string) => grants.find((g) => g.peerId === id)?.token ?? '';
    const { sdp } = await clientOffer('sendonly');
    expect(await errorOf(await post(app, '/whip/fleet?peer=cam', sdp))).toMatchObject({ status: 401 });
    // A session the admin API did not create has no invite to check a token against.
    expect(await errorOf(await post(app, '/whip/elsewhere?peer=cam', sdp, bearer('anything')))).toMatchObject({ status: 403, message: expect.stringContaining('admin API') });
    expect(await errorOf(await post(app, '/whip/fleet?peer=cam', sdp, bearer(tokenOf('tv'))))).toMatchObject({ status: 403 });
    expect(await errorOf(await post(app, '/whip/fleet?peer=tv', sdp, bearer(tokenOf('tv'))))).toMatchObject({ status: 403 });
    await publish(app, 'fleet', '?peer=cam', bearer(tokenOf('cam')));
    const whep = await clientOffer('recvonly');
    expect((await post(app, '/whep/fleet?peer=tv', whep.sdp, bearer(tokenOf('tv')))).status).toBe(201);
  });
});
