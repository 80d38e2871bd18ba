// Relay sessions as the signalling API shows them, on one process and on a cluster (where the session's
// media is on whichever instance placement chose, and each peer's stream and requests on others): the
// server's offer over each peer's own stream, who sees whom, one publisher, what switchboard takes.
// The media itself: test/relay/ (one process), test/cluster/relay*.test.ts (a cluster).
import { afterEach, expect, test } from 'bun:test';
import { RTCPeerConnection } from 'werift';
import { ofType } from '../sse-client';
import { contractBackends, eachBackend, until } from './backends';

const backends = contractBackends();
const fromServer = (type: string) => ofType(type, 'switchboard');

/** werift connections of a test, closed after it. */
const connections: RTCPeerConnection[] = [];
afterEach(async () => {
  for (const pc of connections.splice(0)) await pc.close();
});

/** A viewer's receive-only offer, as a browser makes it (and a new one, with new ICE credentials, for a restart). */
async function viewerOffer(pc = new RTCPeerConnection(), iceRestart = false): Promise<{ pc: RTCPeerConnection; sdp: string }> {
  if (!connections.includes(pc)) {
    connections.push(pc);
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
  }
  await pc.setLocalDescription(await pc.createOffer({ iceRestart }));
  return { pc, sdp: pc.localDescription?.sdp ?? '' };
}

eachBackend(backends, (backend) => {
  test("the server's offer comes over each peer's own stream; viewers see only the publisher come and go", async () => {
    const s = await backend.start();
    expect((await s.register('live', 'cam', { query: 'mode=relay' })).body).toMatchObject({ mode: 'relay', role: 'publisher' });
    const cam = await s.events('live', 'cam');
    const offer = await cam.next(fromServer('offer'));
    const sdp = (offer.json.payload as { type: string; sdp: string }).sdp;
    expect((offer.json.payload as { type: string }).type).toBe('offer');
    // The publisher is offered receive-only sections: it answers with what it sends.
    expect(sdp.match(/^m=(video|audio)/gm)).toEqual(['m=video', 'm=audio']);
    expect(sdp.match(/^a=recvonly/gm)?.length).toBe(2);
    expect(sdp).toContain('a=ice-lite');
    // Its host candidates are in it: nothing to wait for on the stream.
    expect(sdp).toMatch(/^a=candidate:\S+ 1 udp \d+ \S+ \d+ typ host/m);

    expect((await s.register('live', 'v1')).body.peers).toEqual(['cam']);
    const v1 = await s.events('live', 'v1');
    const viewerOffer = ((await v1.next(fromServer('offer'))).json.payload as { sdp: string }).sdp;
    expect(viewerOffer.match(/^a=sendonly/gm)?.length).toBe(2);
    expect(viewerOffer).toMatch(/^a=rtpmap:96 VP8\/90000/m);
    expect(viewerOffer).toMatch(/^a=rtpmap:102 H264\/90000/m);

    // A second viewer: nobody is told, and it does not see v1.
    expect((await s.register('live', 'v2')).body.peers).toEqual(['cam']);
    const v2 = await s.events('live', 'v2');
    await v2.next(fromServer('offer'));
    // The publisher leaves: viewers get peer-left, and its return new-peer; the publisher hears of no viewer.
    expect((await s.leave('live', 'cam')).status).toBe(200);
    await v1.next(ofType('peer-left', 'cam'));
    await s.register('live', 'cam', { query: 'role=publish' });
    await v1.next(ofType('new-peer', 'cam'));
    const cam2 = await s.events('live', 'cam');
    await cam2.next(fromServer('offer'));
    expect((await s.leave('live', 'v2')).status).toBe(200);
    const told = [...v1.events, ...cam2.events].map((e) => [e.json.type, e.json.senderId]).filter(([type]) => type === 'new-peer' || type === 'peer-left');
    expect(told).toEqual([
      ['peer-left', 'cam'],
      ['new-peer', 'cam'],
    ]);
    // The session ends with its last peer.
    expect((await s.close('live')).status).toBe(200);
    await v1.next(ofType('session-closed'));
  });

  test('a peer may offer switchboard its connection: the answer comes over its own stream and switchboard offers nothing; a later offer renegotiates', async () => {
    const s = await backend.start();
    await s.register('own', 'cam', { query: 'mode=relay' });
    await s.register('own', 'v1');
    const offer = (peer: string, sdp: string) => s.message('own', peer, { type: 'offer', target: 'switchboard', payload: { type: 'offer', sdp } });
    // The offer before the stream, as the served client sends it.
    const first = await viewerOffer();
    expect((await offer('v1', first.sdp)).status).toBe(200);
    const v1 = await s.events('own', 'v1');
    const answer = ((await v1.next(fromServer('answer'))).json.payload as { type: string; sdp: string }) ?? {};
    expect(answer.type).toBe('answer');
    expect(answer.sdp.match(/^a=sendonly/gm)?.length).toBe(2);
    expect(answer.sdp).toContain('a=ice-lite');
    expect(answer.sdp).toMatch(/^a=candidate:\S+ 1 udp \d+ \S+ \d+ typ host/m);
    // An ICE restart is an offer too, answered on the same connection: new credentials, the same certificate.
    const again = await viewerOffer(first.pc, true);
    expect((await offer('v1', again.sdp)).status).toBe(200);
    const second = ((await v1.next((e) => fromServer('answer')(e) && e !== v1.events.find(fromServer('answer')))).json.payload as { sdp: string }).sdp;
    const ufrag = (sdp: string) => /^a=ice-ufrag:(\S+)/m.exec(sdp)?.[1];
    const fingerprint = (sdp: string) => /^a=fingerprint:(.+)$/m.exec(sdp)?.[1];
    expect(ufrag(second)).not.toBe(ufrag(answer.sdp));
    expect(fingerprint(second)).toBe(fingerprint(answer.sdp));
    // The stream's opening made no offer of the server's: the peer's connection was there.
    expect(v1.events.filter(fromServer('offer'))).toEqual([]);

    // A stream opened first gets the server's offer; an offer of the peer's that crosses it is answered
    // all the same (the server gives way).
    await s.register('own', 'v2');
    const v2 = await s.events('own', 'v2');
    await v2.next(fromServer('offer'));
    expect((await offer('v2', (await viewerOffer()).sdp)).status).toBe(200);
    expect(((await v2.next(fromServer('answer'))).json.payload as { sdp: string }).sdp).toContain('a=ice-lite');

    // A connection the server offered and the peer answered is renegotiated by an offer of the peer's too.
    await s.register('own', 'v3');
    const v3 = await s.events('own', 'v3');
    const serverOffer = ((await v3.next(fromServer('offer'))).json.payload as { sdp: string }).sdp;
    const answering = new RTCPeerConnection();
    connections.push(answering);
    await answering.setRemoteDescription({ type: 'offer', sdp: serverOffer });
    await answering.setLocalDescription(await answering.createAnswer());
    expect((await s.message('own', 'v3', { type: 'answer', target: 'switchboard', payload: { type: 'answer', sdp: answering.localDescription?.sdp } })).status).toBe(200);
    const renegotiation = await answering.createOffer({ iceRestart: true });
    await answering.setLocalDescription(renegotiation);
    expect((await offer('v3', renegotiation.sdp)).status).toBe(200);
    const reanswer = ((await v3.next(fromServer('answer'))).json.payload as { sdp: string }).sdp;
    // The same connection: its certificate, and the DTLS roles of the first exchange (the server stays the DTLS server).
    expect(fingerprint(reanswer)).toBe(fingerprint(serverOffer));
    expect(reanswer).toMatch(/^a=setup:passive/m);
    // An offer that cannot carry media is a 400 that says why.
    const inactive = (await viewerOffer()).sdp.replace(/^a=recvonly/gm, 'a=inactive');
    const refused = await offer('v1', inactive);
    expect(refused.status).toBe(400);
    expect(refused.body.message).toContain('inactive');
  });

  test("?offer=inline: the server's offer comes once, in the registration's answer where the store can make it at once, else over the stream; answered, it connects", async () => {
    const s = await backend.start();
    await s.register('inline', 'cam', { query: 'mode=relay' });
    // The publisher's stream, and the offer over it: the relay engine is loaded from here on.
    const cam = await s.events('inline', 'cam');
    await cam.next(fromServer('offer'));
    const registered = await s.register('inline', 'v1', { query: 'offer=inline' });
    expect(registered.status).toBe(200);
    const v1 = await s.events('inline', 'v1');
    const inline = registered.body.offer as { type: string; sdp: string } | undefined;
    let sdp: string;
    if (s.differences.inlineOffer === 'answer') {
      expect(inline?.type).toBe('offer');
      sdp = inline?.sdp ?? '';
    } else {
      expect(inline).toBeUndefined();
      sdp = ((await v1.next(fromServer('offer'))).json.payload as { sdp: string }).sdp;
    }
    // The viewer's offer, as over the stream: send-only sections, ICE-lite, its host candidates in it.
    expect(sdp.match(/^a=sendonly/gm)?.length).toBe(2);
    expect(sdp).toContain('a=ice-lite');
    expect(sdp).toMatch(/^a=candidate:\S+ 1 udp \d+ \S+ \d+ typ host/m);
    const pc = new RTCPeerConnection();
    connections.push(pc);
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    expect((await s.message('inline', 'v1', { type: 'answer', target: 'switchboard', payload: { type: 'answer', sdp: pc.localDescription?.sdp } })).status).toBe(200);
    await until(() => pc.connectionState === 'connected', 'the viewer connected to switchboard');
    // Once: by now the stream would have carried a second offer.
    expect(v1.events.filter(fromServer('offer')).length).toBe(s.differences.inlineOffer === 'answer' ? 0 : 1);

    // Outside a relay session the flag changes nothing, and a value it does not know is a 400 that names it.
    const mesh = await s.register('inline-mesh', 'a', { query: 'offer=inline' });
    expect(mesh.status).toBe(200);
    expect(mesh.body.offer).toBeUndefined();
    const wrong = await s.register('inline', 'v2', { query: 'offer=yes' });
    expect(wrong.status).toBe(400);
    expect(wrong.body.message).toContain('query.offer: must be inline');
  });

  test('a relay session has one publisher: a second is a 409 until the first leaves', async () => {
    const s = await backend.start();
    await s.register('r', 'cam', { query: 'mode=relay&role=publish' });
    const second = await s.register('r', 'cam2', { query: 'role=publish' });
    expect(second.status).toBe(409);
    expect(second.body.error).toBe('publisher_exists');
    // The same id registering again is the publisher coming back, not a second one.
    expect((await s.register('r', 'cam', { query: 'role=publish' })).status).toBe(200);
    await s.register('r', 'v1');
    await s.leave('r', 'cam');
    expect((await s.register('r', 'cam2', { query: 'role=publish' })).body.role).toBe('publisher');
  });

  test('switchboard takes answers, candidates and restarts, checked at once; peers do not signal each other', async () => {
    const s = await backend.start();
    await s.register('r', 'cam', { query: 'mode=relay' });
    await s.register('r', 'v1');
    const send = (body: unknown) => s.message('r', 'v1', body);
    const host = { candidate: 'candidate:1 1 udp 2122260223 192.0.2.9 50000 typ host', sdpMid: '0', sdpMLineIndex: 0 };
    expect((await send({ type: 'ice-candidate', target: 'switchboard', payload: host })).status).toBe(200);
    expect((await send({ type: 'ice-candidate', target: 'switchboard', payload: null })).status).toBe(200);
    for (const [body, words] of [
      [{ type: 'answer', target: 'switchboard', payload: { type: 'answer' } }, 'payload.sdp'],
      [{ type: 'ice-candidate', target: 'switchboard', payload: { candidate: 7 } }, 'payload.candidate'],
      [{ type: 'offer', target: 'switchboard', payload: { type: 'offer', sdp: 'v=0\r\n' } }, 'no audio or video section'],
      [{ type: 'offer', target: 'cam', payload: { type: 'offer', sdp: 'v=0\r\n' } }, 'go to target "switchboard" only'],
      [{ type: 'ice-candidate', payload: {} }, 'go to target "switchboard" only'],
    ] as const) {
      const res = await send(body);
      expect(res.status).toBe(400);
      expect(res.body.message).toContain(words);
    }
    // Messages of the application's own still reach the other peers.
    expect((await send({ type: 'chat', target: 'cam', payload: 'hi' })).status).toBe(202);
    // In a relay session switchboard is a target; a peer of another session is not.
    expect((await s.message('r', 'v1', { type: 'chat', target: 'nobody', payload: 1 })).status).toBe(404);
  });

  test('a batch in a relay session: each message to switchboard checked on its own, a media signal to a peer refused in its place', async () => {
    const s = await backend.start();
    await s.register('r', 'cam', { query: 'mode=relay' });
    await s.register('r', 'v1');
    const host = { candidate: 'candidate:1 1 udp 2122260223 192.0.2.9 50000 typ host', sdpMid: '0', sdpMLineIndex: 0 };
    const res = await s.message('r', 'v1', [
      { type: 'ice-candidate', target: 'switchboard', payload: host },
      { type: 'ice-candidate', target: 'switchboard', payload: { candidate: 7 } },
      { type: 'ice-candidate', target: 'cam', payload: host },
      { type: 'chat', target: 'cam', payload: 'hi' },
      { type: 'ice-candidate', target: 'switchboard', payload: null },
    ]);
    expect(res.status).toBe(200);
    const results = res.body.results as { status: number; message: string }[];
    expect(results.map((r) => r.status)).toEqual([200, 400, 400, 202, 200]);
    expect(results[1]?.message).toContain('payload.candidate');
    expect(results[2]?.message).toContain('go to target "switchboard" only');
  });

  test('RELAY_ICE_RESTARTS_PER_MIN: a burst of three ice-restarts to switchboard, then 429 with Retry-After', async () => {
    const s = await backend.start();
    await s.register('r', 'cam', { query: 'mode=relay' });
    const restart = () => s.message('r', 'cam', { type: 'ice-restart', target: 'switchboard', payload: { reason: 'the connection failed' } });
    for (let i = 0; i < 3; i++) expect((await restart()).status).toBe(200);
    const limited = await restart();
    expect(limited.status).toBe(429);
    expect(limited.body).toEqual({ error: 'rate_limited', message: expect.stringContaining('RELAY_ICE_RESTARTS_PER_MIN') });
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  test('RELAY_ICE_RESTARTS_PER_MIN counts offers to switchboard with the ice-restarts: each makes the server negotiate', async () => {
    const s = await backend.start();
    await s.register('r', 'cam', { query: 'mode=relay' });
    await s.register('r', 'v1');
    const offer = async () => s.message('r', 'v1', { type: 'offer', target: 'switchboard', payload: { type: 'offer', sdp: (await viewerOffer()).sdp } });
    expect((await offer()).status).toBe(200);
    expect((await s.message('r', 'v1', { type: 'ice-restart', target: 'switchboard', payload: {} })).status).toBe(200);
    expect((await offer()).status).toBe(200);
    const limited = await offer();
    expect(limited.status).toBe(429);
    expect(limited.body.message).toContain('too many offers and ice-restart messages');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  test('MAX_RELAY_PEERS_PER_IP: an address holds that many relay registrations, whichever instance took them', async () => {
    const s = await backend.start({ maxRelayPeersPerIp: 2, trustProxy: 1 });
    const from = { headers: { 'x-forwarded-for': '198.51.100.7' } };
    expect((await s.register('r', 'cam', { query: 'mode=relay', ...from })).status).toBe(200);
    expect((await s.register('r', 'v1', from)).status).toBe(200);
    const third = await s.register('r', 'v2', from);
    expect(third.status).toBe(429);
    expect(third.body.error).toBe('too_many_relay_peers');
    expect(third.headers.get('retry-after')).toBe('30');
    // Another address, and a mesh registration from the same one, are not counted.
    expect((await s.register('r', 'v2', { headers: { 'x-forwarded-for': '198.51.100.8' } })).status).toBe(200);
    expect((await s.register('m', 'p', from)).status).toBe(200);
    expect((await s.leave('r', 'v1')).status).toBe(200);
    expect((await s.register('r', 'v3', from)).status).toBe(200);
  });
});
