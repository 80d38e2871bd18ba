// The WebSocket transport, with real WebSocket, SSE and raw TCP clients, on one process and on a cluster
// (where a peer's socket is on another instance than its POSTs). The browser side (two Chromium pages over
// ?transport=ws) belongs with the end-to-end browser tests.
import { describe, expect, test } from 'bun:test';
import { ofType } from '../sse-client';
import { type Frame, isType, openSocket } from '../ws-client';
import { openRawSocket } from '../ws-raw';
import { contractBackends, eachBackend, FLOOD_TIMEOUT_MS, until } from './backends';

const backends = contractBackends();
const candidate = (n: number) => ({ candidate: `candidate:${n} 1 udp 2122260223 10.0.0.${n} 5${n}000 typ host`, sdpMid: '0', sdpMLineIndex: 0 });
const withoutId = ({ id: _id, ...rest }: Frame) => rest;
const upgradeHeaders = { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13' };

eachBackend(backends, (backend) => {
  describe('an SSE peer and a WebSocket peer in one session', () => {
    test("the seed's flow: register, new-peer, offer, answer, ICE both ways, pings", async () => {
      const s = await backend.start({ pingIntervalMs: 10_000 });
      // FE on Server-Sent Events, the device on a WebSocket; neither knows how the other is connected.
      await s.register('session1', 'peer1');
      const fe = await s.events('session1', 'peer1');
      expect((await s.register('session1', 'peer2')).body.peers).toEqual(['peer1']);
      expect((await fe.next(ofType('new-peer'))).json).toEqual({ type: 'new-peer', senderId: 'peer2' });
      const device = await s.ws('session1', 'peer2');

      const offer = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' };
      expect((await s.message('session1', 'peer1', { target: 'peer2', type: 'offer', payload: offer })).status).toBe(200);
      const got = await device.next(isType('offer'));
      expect(withoutId(got)).toEqual({ type: 'offer', payload: offer, senderId: 'peer1' });
      expect(typeof got.id).toBe('number');

      const answer = { type: 'answer', sdp: 'v=0\r\n' };
      expect(await device.request({ target: 'peer1', type: 'answer', payload: answer })).toMatchObject({ status: 200, message: 'Message sent' });
      expect((await fe.next(ofType('answer'))).json).toEqual({ type: 'answer', payload: answer, senderId: 'peer2' });

      for (let n = 1; n <= 3; n++) {
        await s.message('session1', 'peer1', { target: 'peer2', type: 'ice-candidate', payload: candidate(n) });
        await device.request({ target: 'peer1', type: 'ice-candidate', payload: candidate(n + 10) });
      }
      for (let n = 1; n <= 3; n++) {
        expect(withoutId(await device.next(isType('ice-candidate')))).toEqual({ type: 'ice-candidate', payload: candidate(n), senderId: 'peer1' });
        expect((await fe.next(ofType('ice-candidate'))).json).toEqual({ type: 'ice-candidate', payload: candidate(n + 10), senderId: 'peer2' });
      }

      // The same ping event on both transports, each with the id of the last event written.
      await device.next(isType('ping'));
      await s.advance(10_000);
      await fe.next(ofType('ping'));
      const ping = await device.next(isType('ping'));
      expect(Object.keys(ping).sort()).toEqual(['id', 'time', 'type']);
      expect(new Date(ping.time as string).toISOString()).toBe(ping.time as string);
      // Event ids grow by one per event written to this peer; pings repeat the last one.
      const ids = device.events.filter((e) => e.type !== 'ping').map((e) => e.id as number);
      expect(ids).toEqual(ids.map((_, i) => (ids[0] as number) + i));
    });

    test('a socket starts with a ping carrying its position, then what was held; the client cannot set senderId', async () => {
      const s = await backend.start();
      await s.register('s', 'a');
      await s.register('s', 'b');
      const a = await s.ws('s', 'a');
      // The first frame is a ping with the position the socket starts from; then what was held (new-peer).
      expect(await a.next()).toMatchObject({ type: 'ping', id: 0 });
      expect(withoutId(await a.next())).toEqual({ type: 'new-peer', senderId: 'b' });
      const b = await s.ws('s', 'b');
      expect(await b.next()).toMatchObject({ type: 'ping', id: 0 });
      await a.request({ target: 'b', type: 'offer', payload: 1, senderId: 'mallory' });
      expect((await b.next(isType('offer'))).senderId).toBe('a');
    });

    test('a broadcast from a WebSocket peer reaches SSE and WebSocket peers alike', async () => {
      const s = await backend.start();
      for (const p of ['a', 'b', 'c']) await s.register('s', p);
      const a = await s.ws('s', 'a');
      const b = await s.events('s', 'b');
      const c = await s.ws('s', 'c');
      expect(await a.request({ type: 'hello', payload: 'all' })).toMatchObject({ status: 200 });
      expect((await b.next(ofType('hello'))).json.senderId).toBe('a');
      expect((await c.next(isType('hello'))).senderId).toBe('a');
    });
  });

  test('ids with every allowed character: frames, events and a resume on another instance', async () => {
    const [session, peer] = ['a.b_c:d@e|f~g-h', 'Z9:|~@.-_'];
    const s = await backend.start();
    await s.register(session, peer);
    await s.register(session, 'b');
    const first = await s.ws(session, peer);
    expect(withoutId(await first.next(isType('new-peer')))).toEqual({ type: 'new-peer', senderId: 'b' });
    const b = await s.ws(session, 'b');
    expect(await b.request({ target: peer, type: 'offer', payload: 1 })).toMatchObject({ status: 200 });
    await first.next(isType('offer', 'b'));
    expect(await first.request({ target: 'b', type: 'answer', payload: 2 })).toMatchObject({ status: 200 });
    expect((await b.next(isType('answer'))).senderId).toBe(peer);
    first.close();
    await first.closed;
    await until(async () => (await s.message(session, 'b', { target: peer, type: 'held' })).status === 202, 'the drop');
    const again = await s.ws(session, peer, { at: s.home(peer) + 2, query: `lastEventId=${first.lastEventId}` });
    expect((await again.next(isType('held'))).senderId).toBe('b');
    expect(again.events.filter((e) => e.type === 'offer')).toEqual([]);
  });

  describe('acks', () => {
    test('the first frame is the opening ping even when the client sends at once: acks follow it', async () => {
      const s = await backend.start();
      await s.register('s', 'a');
      await s.register('s', 'b');
      for (let i = 0; i < 6; i++) {
        const a = await s.ws('s', 'a', { at: i });
        a.send(i % 2 ? 'not json' : JSON.stringify({ id: i, type: 'x', target: 'b' }));
        await until(() => a.frames.some((f) => 'ack' in f), 'the ack');
        expect(a.frames[0]).toMatchObject({ type: 'ping' });
        a.close();
        await a.closed;
      }
    });

    test('carry the status POST /message would answer, and the id the client chose', async () => {
      const s = await backend.start({ maxQueue: 2 });
      await s.register('s', 'a');
      await s.register('s', 'b');
      const a = await s.ws('s', 'a');
      a.send(JSON.stringify({ id: 'offer-1', target: 'b', type: 'offer', payload: {} }));
      a.send(JSON.stringify({ target: 'b', type: 'offer', payload: {} }));
      await until(() => a.frames.filter((f) => 'ack' in f).length === 2, 'two acks');
      const acks = a.frames.filter((f) => 'ack' in f);
      // b is registered but not connected: held for it, as a POST would be answered 202.
      expect(acks).toEqual([
        { ack: 'offer-1', status: 202, message: 'Message queued' },
        { ack: null, status: 202, message: 'Message queued' },
      ]);
      expect(await a.request({ target: 'b', type: 'x' })).toMatchObject({ status: 429, error: 'queue_full', retryAfter: 1 });
      expect(await a.request({ target: 'nobody', type: 'x' })).toMatchObject({ status: 404, error: 'target_not_found' });
      expect(await a.request({ target: 'a', type: 'x' })).toMatchObject({ status: 400, error: 'invalid_request' });
      expect(await a.request({ type: 'new-peer' })).toMatchObject({ status: 400, error: 'reserved_type' });
      const b = await s.ws('s', 'b');
      await b.next(isType('offer'));
      await b.next(isType('offer'));
      expect(await a.request({ target: 'b', type: 'x' })).toEqual({ ack: expect.any(Number), status: 200, message: 'Message sent' });
    });
  });

  describe('the same guarantees as SSE', () => {
    test('order holds per pair across held and live delivery, between the transports', async () => {
      const s = await backend.start();
      await s.register('s', 'a');
      await s.register('s', 'b');
      const a = await s.ws('s', 'a');
      for (let i = 0; i < 20; i++) a.send(JSON.stringify({ target: 'b', type: 'seq', payload: i }));
      await until(() => a.frames.filter((f) => f.status === 202).length === 20, '20 acks');
      const b = await s.events('s', 'b');
      for (let i = 20; i < 40; i++) await a.request({ target: 'b', type: 'seq', payload: i });
      const seen: unknown[] = [];
      for (let i = 0; i < 40; i++) seen.push((await b.next(ofType('seq'))).json.payload);
      expect(seen).toEqual([...Array(40).keys()]);
    });

    test('?lastEventId= resumes after a dropped socket with no loss and no duplicate', async () => {
      const s = await backend.start();
      await s.register('s', 'a');
      await s.register('s', 'b');
      const first = await s.ws('s', 'b');
      for (let i = 0; i < 5; i++) await s.message('s', 'a', { target: 'b', type: 'seq', payload: i });
      for (let i = 0; i < 5; i++) await first.next(isType('seq'));
      first.close();
      await first.closed;
      await until(async () => (await s.message('s', 'a', { target: 'b', type: 'probe' })).status === 202, 'the drop');
      for (let i = 5; i < 10; i++) await s.message('s', 'a', { target: 'b', type: 'seq', payload: i });
      const second = await s.ws('s', 'b', { query: `lastEventId=${first.lastEventId}` });
      const seen: unknown[] = [];
      for (let i = 5; i < 10; i++) seen.push((await second.next(isType('seq'))).payload);
      expect(seen).toEqual([5, 6, 7, 8, 9]);
      await second.next(isType('probe'));
      expect(second.events.filter((e) => e.type === 'seq').length).toBe(5);
    });

    test('an SSE stream can resume on a WebSocket and back: one id sequence per peer', async () => {
      const s = await backend.start();
      await s.register('s', 'a');
      await s.register('s', 'b');
      const sse = await s.events('s', 'b');
      await s.message('s', 'a', { target: 'b', type: 'seq', payload: 0 });
      await sse.next(ofType('seq'));
      const ws = await s.ws('s', 'b', { query: `lastEventId=${sse.lastEventId}` });
      await sse.ended;
      await s.message('s', 'a', { target: 'b', type: 'seq', payload: 1 });
      expect((await ws.next(isType('seq'))).payload).toBe(1);
      expect(ws.events.filter((e) => e.type === 'seq').length).toBe(1);
    });

    test('refusals: an unregistered peer is an HTTP 404; a taken-over id or one no longer kept: an error frame and 4409', async () => {
      const s = await backend.start({ maxQueue: 4 });
      // What GET /events checks is checked before the upgrade: the answer is that route's HTTP error.
      const unknown = await fetch(`${s.url(1)}/ws/s/nobody`, { headers: upgradeHeaders });
      expect(unknown.status).toBe(404);
      expect((await unknown.json()).error).toBe('session_not_found');
      await expect(openSocket(`${s.url(2)}/ws/s/nobody`)).rejects.toThrow();

      await s.register('s', 'viewer');
      await s.register('s', 'device');
      const viewer = await s.ws('s', 'viewer');
      const old = await s.ws('s', 'device');
      await viewer.next(isType('new-peer', 'device'));
      await viewer.request({ target: 'device', type: 'offer', payload: 1 });
      await old.next(isType('offer'));
      // Takeover: the old socket closes; its position belongs to the old incarnation.
      expect((await s.register('s', 'device')).body.peers).toEqual(['viewer']);
      expect((await old.closed).code).toBe(1000);
      await viewer.next(isType('new-peer', 'device'));
      const stale = await s.ws('s', 'device', { query: `lastEventId=${old.lastEventId}` });
      expect(await stale.closed).toEqual({ code: 4409, reason: 'superseded' });

      const device = await s.ws('s', 'device');
      for (let i = 0; i < 8; i++) await viewer.request({ target: 'device', type: 'seq', payload: i });
      for (let i = 0; i < 8; i++) await device.next(isType('seq', 'viewer'));
      // Its opening ping holds the incarnation's first position: eight events later it is out of the window.
      const start = device.events[0] as Frame;
      expect(start.type).toBe('ping');
      const gap = await s.ws('s', 'device', { query: `lastEventId=${start.id}` });
      expect(await gap.closed).toEqual({ code: 4409, reason: 'resume_gap' });
      expect(gap.frames[0]).toMatchObject({ status: 409, error: 'resume_gap' });
    });

    test('a second socket for the same peer replaces the first', async () => {
      const s = await backend.start();
      await s.register('s', 'a');
      await s.register('s', 'b');
      const first = await s.ws('s', 'b');
      const second = await s.ws('s', 'b');
      expect((await first.closed).code).toBe(1000);
      await s.message('s', 'a', { target: 'b', type: 'x' });
      await second.next(isType('x'));
    });

    test('a peer whose socket closed is removed after PEER_TIMEOUT_MS; the others get peer-left', async () => {
      const s = await backend.start({ peerTimeoutMs: 15_000 });
      await s.register('s', 'a');
      await s.register('s', 'b');
      const a = await s.events('s', 'a');
      const b = await s.ws('s', 'b');
      b.close();
      await until(async () => (await s.message('s', 'a', { target: 'b', type: 'probe' })).status === 202, 'the drop');
      await s.advance(14_999);
      expect((await s.message('s', 'a', { target: 'b', type: 'probe' })).status).toBe(202);
      await s.advance(1);
      expect((await a.next(ofType('peer-left'))).json).toEqual({ type: 'peer-left', senderId: 'b' });
    });

    test('DELETE /session: the socket gets session-closed, then closes with 1000', async () => {
      const s = await backend.start();
      await s.register('s', 'a');
      const a = await s.ws('s', 'a');
      await a.next(isType('ping'));
      expect((await s.close('s', { at: 2 })).status).toBe(200);
      expect(withoutId(await a.next(isType('session-closed')))).toEqual({ type: 'session-closed' });
      expect((await a.closed).code).toBe(1000);
    });

    test('without an upgrade the route answers 426 in the error envelope; a bad id is a 400 as on /events', async () => {
      const s = await backend.start();
      await s.register('s', 'a');
      const plain = await fetch(`${s.url(s.home('a') + 1)}/ws/s/a`);
      expect(plain.status).toBe(426);
      expect((await plain.json()).error).toBe('upgrade_required');
      const bad = await fetch(`${s.url(s.home('a') + 1)}/ws/s/a?lastEventId=x`, { headers: upgradeHeaders });
      expect(bad.status).toBe(400);
      expect((await bad.json()).error).toBe('invalid_request');
    });
  });

  describe('the guards of GET /events and POST /message', () => {
    test('with AUTH_MODE=token the socket needs the peer token (?token=), as the event stream does', async () => {
      const s = await backend.start({ authMode: 'token' });
      const { token } = (await s.register('s', 'a')).body;
      const without = await fetch(`${s.url(s.home('a') + 1)}/ws/s/a`, { headers: upgradeHeaders });
      expect(without.status).toBe(401);
      const wrong = await fetch(`${s.url(s.home('a') + 1)}/ws/s/a?token=nope`, { headers: upgradeHeaders });
      expect(wrong.status).toBe(403);
      const a = await s.ws('s', 'a', { query: `token=${encodeURIComponent(token)}` });
      expect((await a.next()).type).toBe('ping');
    });

    test("frames count against the peer's message rate: past its burst the ack is 429 rate_limited", async () => {
      const s = await backend.start({ peerMessageRatePerS: 1, peerMessageBurst: 3 });
      await s.register('s', 'a');
      const a = await s.ws('s', 'a');
      const acks: Frame[] = [];
      for (let i = 0; i < 5; i++) acks.push(await a.request({ type: 'x' }));
      expect(acks.map((f) => f.status)).toEqual([200, 200, 200, 429, 429]);
      expect(acks[3]).toMatchObject({ error: 'rate_limited', retryAfter: expect.any(Number) });
    });

    test("each socket takes one of the address's MAX_STREAMS_PER_IP, and gives it back when it closes", async () => {
      const s = await backend.start({ maxStreamsPerIp: 1 });
      await s.register('s', 'a');
      await s.register('s', 'b');
      // The cap counts per instance (see `differences.rateLimits`): both on one.
      const a = await s.ws('s', 'a', { at: s.home('b') + 1 });
      const refused = await fetch(`${s.url(s.home('b') + 1)}/ws/s/b`, { headers: upgradeHeaders });
      expect(refused.status).toBe(429);
      expect((await refused.json()).error).toBe('too_many_streams');
      a.close();
      await a.closed;
      await until(async () => (await fetch(`${s.url(s.home('b') + 1)}/ws/s/b`, { headers: upgradeHeaders })).status !== 429, 'a free slot');
    });
  });

  describe('bad frames', () => {
    test('each gets an error frame in the envelope of POST /message; the connection goes on', async () => {
      const s = await backend.start();
      await s.register('s', 'a');
      await s.register('s', 'b');
      const a = await s.ws('s', 'a');
      const answers = async (data: string | Uint8Array<ArrayBuffer>) => {
        const before = a.frames.length;
        a.send(data);
        await until(() => a.frames.slice(before).some((f) => 'ack' in f), 'an ack');
        return a.frames.slice(before).find((f) => 'ack' in f) as Frame;
      };
      expect(await answers('{"type":')).toMatchObject({ ack: null, status: 400, error: 'invalid_json' });
      expect(await answers('{"id":3,"type":7}')).toEqual({ ack: 3, status: 400, error: 'invalid_request', message: 'frame.type: Expected string' });
      expect(await answers('{"id":4,"type":"x","target":"no/slash"}')).toMatchObject({ ack: 4, status: 400, error: 'invalid_request' });
      expect(await answers(new Uint8Array([123, 125]))).toMatchObject({ ack: null, status: 400, error: 'invalid_request' });
      const big = JSON.stringify({ id: 5, type: 'offer', target: 'b', payload: 'x'.repeat(64 * 1024) });
      expect(await answers(big)).toMatchObject({ ack: null, status: 413, error: 'payload_too_large' });
      // Five malformed frames are tolerated: a good one still goes through.
      expect(await a.request({ target: 'b', type: 'offer', payload: 1 })).toMatchObject({ status: 202 });
    });

    test('repeated malformed frames close the connection with 1008', async () => {
      const s = await backend.start();
      await s.register('s', 'a');
      const a = await s.ws('s', 'a');
      for (let i = 0; i < 10; i++) a.send(i % 2 ? 'not json' : '5');
      expect((await a.closed).code).toBe(1008);
      // Five answered and tolerated, the sixth answered and the connection closed: nothing read after it.
      expect(a.frames.filter((f) => f.status === 400).length).toBe(6);
      expect(a.frames.find((f) => f.status === 400)).toEqual({ ack: null, status: 400, error: 'invalid_request', message: 'frame: Expected object' });
    });

    test('repeated oversize frames close it with 1009, and one past the hard limit at once', async () => {
      const s = await backend.start();
      await s.register('s', 'a');
      const a = await s.ws('s', 'a');
      for (let i = 0; i < 6; i++) a.send('x'.repeat(64 * 1024 + 1));
      expect((await a.closed).code).toBe(1009);
      expect(a.frames.filter((f) => f.error === 'payload_too_large').length).toBe(6);

      const b = await s.ws('s', 'a');
      b.send('x'.repeat(1024 * 1024));
      expect((await b.closed).code).toBe(1009);
    });

    test('frames refused by the session are not abuse: a hundred 404s keep the connection open', async () => {
      const s = await backend.start({ peerMessageRatePerS: 0 });
      await s.register('s', 'a');
      const a = await s.ws('s', 'a');
      for (let i = 0; i < 100; i++) a.send(JSON.stringify({ target: 'gone', type: 'x' }));
      await until(() => a.frames.filter((f) => f.error === 'target_not_found').length === 100, '100 acks');
      expect(await a.request({ type: 'x' })).toMatchObject({ status: 200 });
    });
  });

  describe('liveness', () => {
    test('a client that answers WebSocket pings stays; one that stops answering is dropped after one interval', async () => {
      const s = await backend.start({ pingIntervalMs: 10_000, peerTimeoutMs: 60_000 });
      await s.register('s', 'a');
      await s.register('s', 'b');
      const live = await openRawSocket(s.url(s.home('a') + 1), '/ws/s/a', { autoPong: true });
      const dead = await openRawSocket(s.url(s.home('b') + 1), '/ws/s/b');
      /** A round trip on `live`: once its ack is back, the server has read everything sent before it. */
      const roundTrip = async (n: number) => {
        live.send(JSON.stringify({ id: n, type: 'probe', target: 'b' }));
        await until(() => live.texts.some((t) => JSON.parse(t).ack === n), 'the ack');
      };
      for (let tick = 1; tick <= 3; tick++) {
        await s.advance(10_000);
        await until(() => live.pings === tick, 'the ping');
        await roundTrip(tick);
      }
      // b read every ping but answered none: dropped at the second tick, so it can time out.
      expect(dead.pings).toBeGreaterThanOrEqual(1);
      await dead.closed;
      expect(live.socket.closed).toBe(false);
      live.socket.destroy();
    });
  });

  describe('a slow reader', () => {
    test(
      'makes messages wait, then is cut off at MAX_QUEUE; on resume it gets every acknowledged message',
      async () => {
        const s = await backend.start({ maxQueue: 16, messageRatePerS: 0, peerMessageRatePerS: 0 });
        await s.register('s', 'a');
        await s.register('s', 'b');
        const b = await openRawSocket(s.url(s.home('b') + 1), '/ws/s/b');
        b.pause();
        const a = await s.ws('s', 'a');
        const payload = 'x'.repeat(4000);
        const statuses: number[] = [];
        // Socket buffers take a few MB, then the sink's own queue; then messages wait (202); at MAX_QUEUE
        // waiting the sender is told 429 and the socket is dropped.
        for (let seq = 0; seq < 20_000; seq++) {
          const ack = await a.request({ target: 'b', type: 'seq', payload: { seq, payload } });
          statuses.push(ack.status as number);
          if (ack.status === 429) break;
        }
        expect(statuses.at(-1)).toBe(429);
        // What 200 promises differs (see `differences.sent`): here it is only said when the 202s come.
        if (s.differences.sent === 'written') expect(statuses.filter((status) => status === 202).length).toBe(16);
        const acknowledged = statuses.filter((status) => status === 200 || status === 202).length;
        b.resume();
        await b.closed;

        // The client resumes from the last event it read whole.
        const received = b.texts.map((t) => JSON.parse(t) as Frame).filter((f) => f.type === 'seq');
        const seqs = received.map((f) => (f.payload as { seq: number }).seq);
        const resumed = await s.ws('s', 'b', { query: `lastEventId=${received.at(-1)?.id ?? 0}` });
        while (seqs.length < acknowledged) seqs.push(((await resumed.next(isType('seq'))).payload as { seq: number }).seq);
        expect(seqs).toEqual([...Array(acknowledged).keys()]);
      },
      FLOOD_TIMEOUT_MS,
    );

    test(
      'a client that sends without reading its acks is cut off before its acks take more than 1 MiB',
      async () => {
        const s = await backend.start({ messageRatePerS: 0, peerMessageRatePerS: 0 });
        await s.register('s', 'a');
        const a = await openRawSocket(s.url(s.home('a') + 1), '/ws/s/a');
        a.pause();
        // Each frame is answered with a 404 ack of about 100 bytes: far more than Bun's 1 MiB limit in all.
        const frame = JSON.stringify({ type: 'x', target: 'nobody' });
        for (let i = 0; i < 200_000 && !a.socket.closed; i++) {
          a.send(frame);
          if (i % 1000 === 999) await Bun.sleep(0);
        }
        a.resume();
        await a.closed;
        expect(a.texts.length).toBeLessThan(200_000);
      },
      FLOOD_TIMEOUT_MS,
    );

    test(
      'a socket that stays full for a whole ping interval is dropped, so the peer can time out',
      async () => {
        const s = await backend.start({ maxQueue: 64, pingIntervalMs: 10_000, peerTimeoutMs: 60_000, messageRatePerS: 0, peerMessageRatePerS: 0 });
        await s.register('s', 'a');
        await s.register('s', 'b');
        const a = await s.events('s', 'a');
        const b = await openRawSocket(s.url(s.home('b') + 1), '/ws/s/b');
        b.pause();
        const payload = 'x'.repeat(4000);
        let status = 200;
        while (status === 200) status = (await s.message('s', 'a', { target: 'b', type: 'x', payload })).status;
        if (s.differences.sent === 'written') {
          // The process sees the backed-up socket: messages wait (202) until a ping interval later it is dropped.
          expect(status).toBe(202);
          await s.advance(10_000);
          expect((await s.message('s', 'a', { target: 'b', type: 'x' })).status).toBe(202);
        } else {
          // The sender's instance does not see the other's socket: it is dropped at MAX_QUEUE instead.
          expect(status).toBe(429);
          await s.advance(10_000);
        }
        await s.advance(10_000);
        b.resume();
        await b.closed;
        // Without its socket the peer times out.
        await s.advance(60_000);
        await a.next(ofType('peer-left', 'b'));
        expect((await s.message('s', 'a', { target: 'b', type: 'x' })).body.error).toBe('target_not_found');
      },
      FLOOD_TIMEOUT_MS,
    );
  });
});
