// GET /events (Server-Sent Events): the seed flow, nothing lost before a stream opens, resume, leaving
// and takeover, slow readers; on one process and on a cluster, where each stream is on another
// instance than its peer's POSTs.
import { expect, test } from 'bun:test';
import net from 'node:net';
import { ofType } from '../sse-client';
import { contractBackends, eachBackend, FLOOD_TIMEOUT_MS, until } from './backends';

const backends = contractBackends();
/** These tests flood one peer on purpose: the message rate limits would answer before the queue does. */
const floodAllowed = { messageRatePerS: 0, peerMessageRatePerS: 0 };

/** The body of a raw chunked HTTP/1.1 response, as far as it arrived whole. */
function dechunk(raw: string): string {
  let at = raw.indexOf('\r\n\r\n') + 4;
  let body = '';
  for (;;) {
    const eol = raw.indexOf('\r\n', at);
    if (eol < 0) return body;
    const size = Number.parseInt(raw.slice(at, eol), 16);
    if (!(size > 0) || eol + 2 + size > raw.length) return body + raw.slice(eol + 2, eol + 2 + Math.max(0, size));
    body += raw.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

/** A raw HTTP/1.1 client for `path` on `url` that reads the first bytes, then stops reading. */
async function stalledReader(url: string, path: string) {
  const socket = net.connect(Number(new URL(url).port), '127.0.0.1');
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`);
  let received = '';
  await new Promise<void>((resolve) => socket.once('data', (d) => resolve(void (received += d))));
  socket.pause();
  socket.on('data', (d) => (received += d));
  return { socket, closed, received: () => received };
}

const candidate = (n: number) => ({ candidate: `candidate:${n} 1 udp 2122260223 192.168.1.${n} 5${n}000 typ host`, sdpMid: '0', sdpMLineIndex: 0 });

eachBackend(backends, (backend) => {
  test('the seed flow: register, new-peer, offer, answer, ICE both ways, pings', async () => {
    const s = await backend.start({ pingIntervalMs: 10_000 });
    // FE registers and opens its stream.
    expect((await s.register('session1', 'peer1')).body.message).toBe('session registered successfully');
    const fe = await s.events('session1', 'peer1');
    expect(fe.status).toBe(200);
    // User2 registers: FE hears of it.
    expect((await s.register('session1', 'peer2')).body.peers).toEqual(['peer1']);
    expect((await fe.next(ofType('new-peer'))).json).toEqual({ type: 'new-peer', senderId: 'peer2' });
    const user2 = await s.events('session1', 'peer2');

    const offer = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' };
    const sent = await s.message('session1', 'peer1', { target: 'peer2', type: 'offer', payload: offer });
    expect(sent).toMatchObject({ status: 200, body: { message: 'Message sent' } });
    expect((await user2.next(ofType('offer'))).json).toEqual({ type: 'offer', payload: offer, senderId: 'peer1' });

    const answer = { type: 'answer', sdp: 'v=0\r\n' };
    expect((await s.message('session1', 'peer2', { target: 'peer1', type: 'answer', payload: answer })).status).toBe(200);
    expect((await fe.next(ofType('answer'))).json).toEqual({ type: 'answer', payload: answer, senderId: 'peer2' });

    for (let n = 1; n <= 3; n++) {
      await s.message('session1', 'peer1', { target: 'peer2', type: 'ice-candidate', payload: candidate(n) });
      await s.message('session1', 'peer2', { target: 'peer1', type: 'ice-candidate', payload: candidate(n + 10) });
    }
    for (let n = 1; n <= 3; n++) {
      expect((await user2.next(ofType('ice-candidate'))).json).toEqual({ type: 'ice-candidate', payload: candidate(n), senderId: 'peer1' });
      expect((await fe.next(ofType('ice-candidate'))).json).toEqual({ type: 'ice-candidate', payload: candidate(n + 10), senderId: 'peer2' });
    }

    await s.advance(10_000);
    const ping = await fe.next(ofType('ping'));
    expect(Object.keys(ping.json).sort()).toEqual(['time', 'type']);
    expect(new Date(ping.json.time as string).toISOString()).toBe(ping.json.time as string);

    // Data-only events: every frame has an id and no event field; every data line is one JSON object.
    expect(fe.raw.startsWith('retry: ')).toBe(true);
    expect(fe.raw).not.toMatch(/^event:/m);
    for (const e of fe.events) expect(e.id).toMatch(/^\d+$/);
    expect(fe.headers.get('content-type')).toStartWith('text/event-stream');
    expect(fe.headers.get('cache-control')).toContain('no-cache');
    expect(fe.headers.get('x-accel-buffering')).toBe('no');
  });

  test('the client cannot set senderId', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    await s.register('s', 'b');
    const b = await s.events('s', 'b');
    await s.message('s', 'a', { target: 'b', type: 'offer', payload: 1, senderId: 'mallory' });
    expect((await b.next(ofType('offer'))).json.senderId).toBe('a');
  });

  test('a payload sent with line breaks between its tokens arrives as one data line, the same value, over SSE and WebSocket', async () => {
    const s = await backend.start();
    for (const p of ['a', 'b', 'c']) await s.register('s', p);
    const b = await s.events('s', 'b');
    const c = await s.ws('s', 'c');
    // JSON allows CR and LF between tokens; a data line may carry neither, and a key may read like a field.
    const payload = '{\r\n "id: 99": "x",\n "event": ["y"\r, 1]\n}';
    const value = JSON.parse(payload);
    const post = (target: string) =>
      fetch(`${s.url()}/message/s/a`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"type":"pretty","target":"${target}","payload":${payload}}` });
    expect((await post('b')).status).toBe(200);
    expect((await post('c')).status).toBe(200);
    expect((await b.next(ofType('pretty', 'a'))).json).toEqual({ type: 'pretty', payload: value, senderId: 'a' });
    expect(await c.next((e) => e.type === 'pretty')).toMatchObject({ type: 'pretty', payload: value, senderId: 'a' });
    // The same text in a WebSocket frame, to an SSE reader.
    c.send(`{"type":"pretty","target":"b","payload":${payload}}`);
    expect((await b.next(ofType('pretty', 'c'))).json).toEqual({ type: 'pretty', payload: value, senderId: 'c' });
    // The stream has no line but its fields: each block an id line and one data line of one JSON object.
    for (const block of b.raw.split('\n\n').filter((x) => x.startsWith('id: ') && x.includes('data: '))) {
      const lines = block.split('\n');
      expect(lines).toHaveLength(2);
      JSON.parse((lines[1] as string).slice('data: '.length));
    }
    expect(b.raw).not.toMatch(/^event:/m);
  });

  test('a broadcast reaches every other peer and not the sender', async () => {
    const s = await backend.start();
    for (const p of ['a', 'b', 'c']) await s.register('s', p);
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((p) => s.events('s', p)));
    expect((await s.message('s', 'a', { type: 'hello', payload: 'all' })).status).toBe(200);
    expect((await b?.next(ofType('hello')))?.json.senderId).toBe('a');
    expect((await c?.next(ofType('hello')))?.json.senderId).toBe('a');
    await s.message('s', 'b', { type: 'marker', target: 'a' });
    await a?.next(ofType('marker'));
    expect(a?.events.some((e) => e.json.type === 'hello')).toBe(false);
  });

  test("an offer sent before the target's stream opens arrives when it opens", async () => {
    const s = await backend.start();
    await s.register('s', 'publisher');
    await s.register('s', 'viewer');
    const queued = await s.message('s', 'publisher', { target: 'viewer', type: 'offer', payload: { sdp: 'x' } });
    expect(queued).toMatchObject({ status: 202, body: { message: 'Message queued' } });
    await s.message('s', 'publisher', { target: 'viewer', type: 'ice-candidate', payload: candidate(1) });
    const viewer = await s.events('s', 'viewer');
    expect((await viewer.next()).json.type).toBe('offer');
    expect((await viewer.next()).json.type).toBe('ice-candidate');
  });

  test('a publisher whose stream opens after a viewer registered still learns of the viewer', async () => {
    const s = await backend.start();
    await s.register('s', 'publisher');
    await s.register('s', 'viewer');
    const publisher = await s.events('s', 'publisher');
    expect((await publisher.next()).json).toEqual({ type: 'new-peer', senderId: 'viewer' });
  });

  test('order holds per pair across held and live delivery', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    await s.register('s', 'b');
    for (let i = 0; i < 20; i++) await s.message('s', 'a', { target: 'b', type: 'seq', payload: i });
    const b = await s.events('s', 'b');
    for (let i = 20; i < 40; i++) await s.message('s', 'a', { target: 'b', type: 'seq', payload: i });
    const seen: unknown[] = [];
    for (let i = 0; i < 40; i++) seen.push((await b.next(ofType('seq'))).json.payload);
    expect(seen).toEqual([...Array(40).keys()]);
  });

  test('a peer that comes and goes leaves one notice in a peer that is not reading', async () => {
    const s = await backend.start({ registerRatePerMin: 0 });
    await s.register('s', 'idle');
    for (let i = 0; i < 30; i++) {
      await s.register('s', 'flapper', { at: i });
      await s.leave('s', 'flapper', { at: i + 1 });
    }
    await s.register('s', 'flapper');
    const idle = await s.events('s', 'idle');
    await s.message('s', 'flapper', { target: 'idle', type: 'marker' });
    await idle.next(ofType('marker'));
    expect(idle.events.map((e) => `${e.json.type}:${e.json.senderId}`)).toEqual(['new-peer:flapper', 'marker:flapper']);
  });

  test('Last-Event-ID resumes after a dropped stream with no loss and no duplicate, on any instance', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    await s.register('s', 'b');
    const first = await s.events('s', 'b');
    for (let i = 0; i < 5; i++) await s.message('s', 'a', { target: 'b', type: 'seq', payload: i });
    for (let i = 0; i < 5; i++) await first.next(ofType('seq'));
    first.close();
    // The server notices the drop: messages are held from then on.
    await until(async () => (await s.message('s', 'a', { target: 'b', type: 'probe' })).status === 202, 'the drop');
    for (let i = 5; i < 10; i++) await s.message('s', 'a', { target: 'b', type: 'seq', payload: i });
    const second = await s.events('s', 'b', { lastEventId: first.lastEventId, at: s.home('b') + 2 });
    const seen: unknown[] = [];
    for (let i = 5; i < 10; i++) seen.push((await second.next(ofType('seq'))).json.payload);
    expect(seen).toEqual([5, 6, 7, 8, 9]);
    expect(second.events.filter((e) => e.json.type === 'seq').length).toBe(5);
  });

  test('a first stream can start from the id POST /register returned, and so lose nothing even if it drops at once', async () => {
    const s = await backend.start();
    await s.register('s', 'publisher');
    const { lastEventId } = (await s.register('s', 'viewer')).body;
    expect(lastEventId).toBe(0);
    await s.message('s', 'publisher', { target: 'viewer', type: 'offer', payload: 1 });
    const first = await s.events('s', 'viewer', { query: `lastEventId=${lastEventId}` });
    await first.next(ofType('offer'));
    // The position comes before the held events, so a drop between them can be resumed exactly.
    expect(first.raw).toMatch(/^retry: \d+\n\nid: 0\n\nid: 1\ndata: /);
    first.close();
    // A client that lost that stream before reading it reconnects with the same URL and no header.
    const again = await s.events('s', 'viewer', { query: `lastEventId=${lastEventId}`, at: 0 });
    expect((await again.next(ofType('offer'))).json.payload).toBe(1);
  });

  test('a re-registration returns a position past everything of the earlier one', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    await s.register('s', 'b');
    await s.message('s', 'a', { target: 'b', type: 'x' });
    const { lastEventId } = (await s.register('s', 'b', { at: 2 })).body;
    expect(lastEventId).toBeGreaterThan(1);
    const b = await s.events('s', 'b', { query: `lastEventId=${lastEventId}` });
    await s.message('s', 'a', { target: 'b', type: 'y' });
    expect((await b.next()).json.type).toBe('y');
  });

  test('a Last-Event-ID that cannot be resumed is refused before any stream opens', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    await s.register('s', 'b');
    for (let i = 0; i < 3; i++) await s.message('s', 'a', { target: 'b', type: 'x' });
    const refused = async (lastEventId: string, at: number) => {
      const res = await s.call('GET', '/events/s/b', undefined, { 'last-event-id': lastEventId }, at);
      return [res.status, res.body.error];
    };
    // Past the last id given: a position this peer never had.
    expect(await refused('4', 0)).toEqual([409, 'resume_gap']);
    expect(await refused('999', 1)).toEqual([409, 'resume_gap']);
    for (const bad of ['-1', '1.5', '9007199254740993']) expect(await refused(bad, 2)).toEqual([400, 'invalid_request']);
    // The last id given is a position to resume from.
    const resumed = await s.events('s', 'b', { lastEventId: '3' });
    expect(resumed.status).toBe(200);
    resumed.close();
    // After a takeover, a position of the earlier registration is no longer this peer's.
    await s.register('s', 'b', { at: 2 });
    expect(await refused('2', 0)).toEqual([409, 'superseded']);
  });

  test('a stream that received nothing still has an id to resume from', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    const a = await s.events('s', 'a');
    await until(() => a.lastEventId !== '', 'the first id');
    expect(a.lastEventId).toBe('0');
    expect(a.retry).toBe(1000);
  });

  test('a second stream for the same peer replaces the first, on any instance', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    await s.register('s', 'b');
    const first = await s.events('s', 'b');
    const second = await s.events('s', 'b', { at: s.home('b') + 2 });
    await first.ended;
    await s.message('s', 'a', { target: 'b', type: 'x' });
    await second.next(ofType('x'));
  });

  test('a peer without a stream for PEER_TIMEOUT_MS is removed and the others get peer-left', async () => {
    const s = await backend.start({ peerTimeoutMs: 15_000 });
    await s.register('s', 'a');
    await s.register('s', 'b');
    const a = await s.events('s', 'a');
    const b = await s.events('s', 'b');
    b.close();
    await until(async () => (await s.message('s', 'a', { target: 'b', type: 'probe' })).status === 202, 'the drop');
    await s.advance(14_999);
    expect((await s.message('s', 'a', { target: 'b', type: 'probe' })).status).toBe(202);
    await s.advance(1);
    expect((await a.next(ofType('peer-left'))).json).toEqual({ type: 'peer-left', senderId: 'b' });
    expect((await s.message('s', 'a', { target: 'b', type: 'probe' })).status).toBe(404);
  });

  test('reconnecting within the timeout keeps the peer and delivers what was held', async () => {
    const s = await backend.start({ peerTimeoutMs: 15_000 });
    await s.register('s', 'a');
    await s.register('s', 'b');
    const a = await s.events('s', 'a');
    const b = await s.events('s', 'b');
    await until(() => b.lastEventId !== '', 'the first id');
    b.close();
    await until(async () => (await s.message('s', 'a', { target: 'b', type: 'held' })).status === 202, 'the drop');
    await s.advance(10_000);
    const back = await s.events('s', 'b', { lastEventId: b.lastEventId, at: s.home('b') + 2 });
    await back.next(ofType('held'));
    await s.advance(60_000);
    expect((await s.message('s', 'a', { target: 'b', type: 'still-here' })).status).toBe(200);
    expect(a.events.some((e) => e.json.type === 'peer-left')).toBe(false);
  });

  test('a peer that registers and never connects is removed after the timeout too', async () => {
    const s = await backend.start({ peerTimeoutMs: 1000 });
    await s.register('s', 'a');
    const a = await s.events('s', 'a');
    await s.register('s', 'ghost');
    await s.advance(1000);
    expect((await a.next(ofType('peer-left'))).json.senderId).toBe('ghost');
  });

  test('DELETE /register: the others get peer-left and the leaving stream ends', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    await s.register('s', 'b');
    const a = await s.events('s', 'a');
    const b = await s.events('s', 'b');
    expect((await s.leave('s', 'b')).status).toBe(200);
    expect((await a.next(ofType('peer-left'))).json).toEqual({ type: 'peer-left', senderId: 'b' });
    await b.ended;
  });

  test('DELETE /session: every peer gets session-closed, then its stream ends', async () => {
    const s = await backend.start();
    await s.register('s', 'a');
    await s.register('s', 'b');
    const a = await s.events('s', 'a');
    const b = await s.events('s', 'b');
    await a.next(ofType('new-peer'));
    expect((await s.close('s', { at: 2 })).status).toBe(200);
    for (const stream of [a, b]) {
      expect((await stream.next(ofType('session-closed'))).json).toEqual({ type: 'session-closed' });
      await stream.ended;
    }
    const after = await s.call('GET', '/events/s/a', undefined, {}, 1);
    expect(after.status).toBe(404);
    expect(after.body.error).toBe('session_not_found');
  });

  test('re-registering takes the id over: the old stream ends, cannot resume, and the others see new-peer again', async () => {
    const s = await backend.start();
    await s.register('s', 'viewer');
    await s.register('s', 'device');
    const viewer = await s.events('s', 'viewer');
    const oldDevice = await s.events('s', 'device');
    await viewer.next(ofType('new-peer', 'device'));
    await s.message('s', 'viewer', { target: 'device', type: 'offer', payload: 1 });
    await oldDevice.next(ofType('offer'));

    expect((await s.register('s', 'device', { at: s.home('device') + 2 })).body.peers).toEqual(['viewer']);
    await oldDevice.ended;
    expect((await viewer.next(ofType('new-peer', 'device'))).json.senderId).toBe('device');
    const stale = await s.call('GET', '/events/s/device', undefined, { 'last-event-id': oldDevice.lastEventId }, 0);
    expect(stale.status).toBe(409);
    expect(stale.body.error).toBe('superseded');
    const newDevice = await s.events('s', 'device');
    await s.message('s', 'viewer', { target: 'device', type: 'offer', payload: 2 });
    expect((await newDevice.next(ofType('offer'))).json.payload).toBe(2);
  });

  test(
    'a slow reader makes messages wait, then is cut off at MAX_QUEUE; on resume it gets every acknowledged message',
    async () => {
      const s = await backend.start({ maxQueue: 16, ...floodAllowed });
      await s.register('s', 'a');
      await s.register('s', 'b');
      const reader = await stalledReader(s.url(s.home('b') + 1), '/events/s/b');
      const payload = 'x'.repeat(4000);
      const statuses: number[] = [];
      // Socket buffers take a few MB; then the stream's own queue fills and messages wait (202);
      // at MAX_QUEUE waiting the sender gets 429 and the stream is cut.
      for (let seq = 0; seq < 20_000; seq++) {
        const { status } = await s.message('s', 'a', { target: 'b', type: 'seq', payload: { seq, payload } });
        statuses.push(status);
        if (status === 429) break;
      }
      expect(statuses.at(-1)).toBe(429);
      const acknowledged = statuses.filter((status) => status === 200 || status === 202).length;
      // What 200 promises differs (see `differences.sent`): here it is only said when the 202s come.
      if (s.differences.sent === 'written') expect(statuses.filter((status) => status === 202).length).toBe(16);
      // The stream is ended after what was written: the response completes (the last chunk), and the
      // socket, a keep-alive connection, may stay open.
      reader.socket.resume();
      const ended = () => reader.received().includes('\r\n0\r\n\r\n');
      await Promise.race([reader.closed, until(ended, 'the end of the stream')]);
      reader.socket.destroy();

      // The client resumes from the last complete event it read (the cut may have left half of one).
      const complete = [...dechunk(reader.received()).matchAll(/^id: (\d+)\ndata: (.*)\n\n/gm)];
      const seqs = complete.map((m) => JSON.parse(m[2] as string).payload.seq as number);
      const ids = complete.map((m) => m[1] as string);
      const resumed = await s.events('s', 'b', { lastEventId: ids.at(-1) });
      expect(resumed.status).toBe(200);
      while (seqs.length < acknowledged) seqs.push(((await resumed.next(ofType('seq'))).json.payload as { seq: number }).seq);
      expect(seqs).toEqual([...Array(acknowledged).keys()]);
    },
    FLOOD_TIMEOUT_MS,
  );

  test(
    'a stream that stays full for a whole ping interval is cut, so the peer can time out',
    async () => {
      const s = await backend.start({ maxQueue: 64, pingIntervalMs: 10_000, peerTimeoutMs: 60_000, ...floodAllowed });
      await s.register('s', 'a');
      await s.register('s', 'b');
      const a = await s.events('s', 'a');
      const reader = await stalledReader(s.url(s.home('b') + 1), '/events/s/b');
      const payload = 'x'.repeat(4000);
      let status = 200;
      while (status === 200) status = (await s.message('s', 'a', { target: 'b', type: 'x', payload })).status;
      if (s.differences.sent === 'written') {
        // The process sees the backed-up stream: messages wait (202) until a ping interval later it is cut.
        expect(status).toBe(202);
        await s.advance(10_000);
        expect((await s.message('s', 'a', { target: 'b', type: 'x' })).status).toBe(202);
      } else {
        // The sender's instance does not see the other's socket: the stream is cut at MAX_QUEUE instead.
        expect(status).toBe(429);
        await s.advance(10_000);
      }
      await s.advance(10_000);
      reader.socket.resume();
      // The stream ends (its last chunk); the keep-alive socket may stay open.
      await Promise.race([reader.closed, until(() => reader.received().includes('\r\n0\r\n\r\n'), 'the end of the stream')]);
      reader.socket.destroy();
      // Without its stream the peer times out.
      await s.advance(60_000);
      await a.next(ofType('peer-left', 'b'));
      expect((await s.message('s', 'a', { target: 'b', type: 'x' })).body.error).toBe('target_not_found');
    },
    FLOOD_TIMEOUT_MS,
  );
});
