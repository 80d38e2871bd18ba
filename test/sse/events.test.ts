import { afterEach, describe, expect, test } from 'bun:test';
import net from 'node:net';
import { ManualClock, post, type Running, startServer, until } from '../helpers';
import { ofType, openEvents, type SseConnection } from '../sse-client';

let running: Running[] = [];
const streams: SseConnection[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) s.close();
  await Promise.all(running.map((r) => r.stop()));
  running = [];
});

function server(...args: Parameters<typeof startServer>): Running {
  const r = startServer(...args);
  running.push(r);
  return r;
}

async function events(url: string, init?: Parameters<typeof openEvents>[1]) {
  const s = await openEvents(url, init);
  streams.push(s);
  return s;
}

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

const candidate = (n: number) => ({ candidate: `candidate:${n} 1 udp 2122260223 192.168.1.${n} 5${n}000 typ host`, sdpMid: '0', sdpMLineIndex: 0 });

describe('the seed flow over a real listener', () => {
  test('register, new-peer, offer, answer, ICE both ways, pings', async () => {
    const { url } = server({ pingIntervalMs: 50 });
    // FE registers and opens its stream.
    expect((await post(`${url}/register/session1/peer1`)).body.message).toBe('session registered successfully');
    const fe = await events(`${url}/events/session1/peer1`);
    expect(fe.status).toBe(200);
    // User2 registers: FE hears of it.
    expect((await post(`${url}/register/session1/peer2`)).body.peers).toEqual(['peer1']);
    expect((await fe.next(ofType('new-peer'))).json).toEqual({ type: 'new-peer', senderId: 'peer2' });
    const user2 = await events(`${url}/events/session1/peer2`);

    const offer = { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' };
    const sent = await post(`${url}/message/session1/peer1`, { target: 'peer2', type: 'offer', payload: offer });
    expect(sent).toMatchObject({ status: 200, body: { message: 'Message sent' } });
    expect((await user2.next(ofType('offer'))).json).toEqual({ type: 'offer', payload: offer, senderId: 'peer1' });

    const answer = { type: 'answer', sdp: 'v=0\r\n' };
    expect((await post(`${url}/message/session1/peer2`, { target: 'peer1', type: 'answer', payload: answer })).status).toBe(200);
    expect((await fe.next(ofType('answer'))).json).toEqual({ type: 'answer', payload: answer, senderId: 'peer2' });

    for (let n = 1; n <= 3; n++) {
      await post(`${url}/message/session1/peer1`, { target: 'peer2', type: 'ice-candidate', payload: candidate(n) });
      await post(`${url}/message/session1/peer2`, { target: 'peer1', type: 'ice-candidate', payload: candidate(n + 10) });
    }
    for (let n = 1; n <= 3; n++) {
      expect((await user2.next(ofType('ice-candidate'))).json).toEqual({ type: 'ice-candidate', payload: candidate(n), senderId: 'peer1' });
      expect((await fe.next(ofType('ice-candidate'))).json).toEqual({ type: 'ice-candidate', payload: candidate(n + 10), senderId: 'peer2' });
    }

    const ping = await fe.next(ofType('ping'), 2000);
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
    const { url } = server();
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    const b = await events(`${url}/events/s/b`);
    await post(`${url}/message/s/a`, { target: 'b', type: 'offer', payload: 1, senderId: 'mallory' });
    expect((await b.next(ofType('offer'))).json.senderId).toBe('a');
  });

  test('a broadcast reaches every other peer and not the sender', async () => {
    const { url } = server();
    for (const p of ['a', 'b', 'c']) await post(`${url}/register/s/${p}`);
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((p) => events(`${url}/events/s/${p}`)));
    expect((await post(`${url}/message/s/a`, { type: 'hello', payload: 'all' })).status).toBe(200);
    expect((await b!.next(ofType('hello'))).json.senderId).toBe('a');
    expect((await c!.next(ofType('hello'))).json.senderId).toBe('a');
    await post(`${url}/message/s/b`, { type: 'marker', target: 'a' });
    await a!.next(ofType('marker'));
    expect(a!.events.some((e) => e.json.type === 'hello')).toBe(false);
  });
});

describe('nothing is lost before a stream opens', () => {
  test("an offer sent before the target's stream opens arrives when it opens", async () => {
    const { url } = server();
    await post(`${url}/register/s/publisher`);
    await post(`${url}/register/s/viewer`);
    const queued = await post(`${url}/message/s/publisher`, { target: 'viewer', type: 'offer', payload: { sdp: 'x' } });
    expect(queued).toMatchObject({ status: 202, body: { message: 'Message queued' } });
    await post(`${url}/message/s/publisher`, { target: 'viewer', type: 'ice-candidate', payload: candidate(1) });
    const viewer = await events(`${url}/events/s/viewer`);
    expect((await viewer.next()).json.type).toBe('offer');
    expect((await viewer.next()).json.type).toBe('ice-candidate');
  });

  test('a publisher whose stream opens after a viewer registered still learns of the viewer', async () => {
    const { url } = server();
    await post(`${url}/register/s/publisher`);
    await post(`${url}/register/s/viewer`);
    const publisher = await events(`${url}/events/s/publisher`);
    expect((await publisher.next()).json).toEqual({ type: 'new-peer', senderId: 'viewer' });
  });

  test('order holds per pair across held and live delivery', async () => {
    const { url } = server();
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    for (let i = 0; i < 20; i++) await post(`${url}/message/s/a`, { target: 'b', type: 'seq', payload: i });
    const b = await events(`${url}/events/s/b`);
    for (let i = 20; i < 40; i++) await post(`${url}/message/s/a`, { target: 'b', type: 'seq', payload: i });
    const seen: unknown[] = [];
    for (let i = 0; i < 40; i++) seen.push((await b.next(ofType('seq'))).json.payload);
    expect(seen).toEqual([...Array(40).keys()]);
  });
});

describe('reconnects', () => {
  test('Last-Event-ID resumes after a dropped stream with no loss and no duplicate', async () => {
    const { url } = server();
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    const first = await events(`${url}/events/s/b`);
    for (let i = 0; i < 5; i++) await post(`${url}/message/s/a`, { target: 'b', type: 'seq', payload: i });
    for (let i = 0; i < 5; i++) await first.next(ofType('seq'));
    first.close();
    // The server notices the drop: messages are held from then on.
    await until(async () => (await post(`${url}/message/s/a`, { target: 'b', type: 'probe' })).status === 202);
    for (let i = 5; i < 10; i++) await post(`${url}/message/s/a`, { target: 'b', type: 'seq', payload: i });
    const second = await events(`${url}/events/s/b`, { lastEventId: first.lastEventId });
    const seen: unknown[] = [];
    for (let i = 5; i < 10; i++) seen.push((await second.next(ofType('seq'))).json.payload);
    expect(seen).toEqual([5, 6, 7, 8, 9]);
    expect(second.events.filter((e) => e.json.type === 'seq').length).toBe(5);
  });

  test('a first stream can start from the id POST /register returned, and so lose nothing even if it drops at once', async () => {
    const { url } = server();
    await post(`${url}/register/s/publisher`);
    const { lastEventId } = (await post(`${url}/register/s/viewer`)).body;
    expect(lastEventId).toBe(0);
    await post(`${url}/message/s/publisher`, { target: 'viewer', type: 'offer', payload: 1 });
    const first = await events(`${url}/events/s/viewer?lastEventId=${lastEventId}`);
    await first.next(ofType('offer'));
    // The position comes before the held events, so a drop between them can be resumed exactly.
    expect(first.raw).toMatch(/^retry: \d+\n\nid: 0\n\nid: 1\ndata: /);
    first.close();
    // A client that lost that stream before reading it reconnects with the same URL and no header.
    const again = await events(`${url}/events/s/viewer?lastEventId=${lastEventId}`);
    expect((await again.next(ofType('offer'))).json.payload).toBe(1);
  });

  test('a re-registration returns a position past everything of the earlier one', async () => {
    const { url } = server();
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    await post(`${url}/message/s/a`, { target: 'b', type: 'x' });
    const { lastEventId } = (await post(`${url}/register/s/b`)).body;
    expect(lastEventId).toBeGreaterThan(1);
    const b = await events(`${url}/events/s/b?lastEventId=${lastEventId}`);
    await post(`${url}/message/s/a`, { target: 'b', type: 'y' });
    expect((await b.next()).json.type).toBe('y');
  });

  test('a stream that received nothing still has an id to resume from', async () => {
    const { url } = server();
    await post(`${url}/register/s/a`);
    const a = await events(`${url}/events/s/a`);
    await until(() => a.lastEventId !== '');
    expect(a.lastEventId).toBe('0');
    expect(a.retry).toBe(1000);
  });

  test('a second stream for the same peer replaces the first', async () => {
    const { url } = server();
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    const first = await events(`${url}/events/s/b`);
    const second = await events(`${url}/events/s/b`);
    await first.ended;
    await post(`${url}/message/s/a`, { target: 'b', type: 'x' });
    await second.next(ofType('x'));
  });

  test('streams outlive the idle timeout of the listener', async () => {
    // An idle timeout of 1 s and no pings: without server.timeout(req, 0) the stream would be cut.
    const { url } = server({ pingIntervalMs: 60_000 }, {}, { idleTimeout: 1 });
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    const b = await events(`${url}/events/s/b`);
    await Bun.sleep(2500);
    expect((await post(`${url}/message/s/a`, { target: 'b', type: 'late' })).status).toBe(200);
    await b.next(ofType('late'));
  });
});

describe('leaving', () => {
  test('a peer without a stream for PEER_TIMEOUT_MS is removed and the others get peer-left', async () => {
    const clock = new ManualClock();
    const { url } = server({ peerTimeoutMs: 15_000 }, { clock });
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    const a = await events(`${url}/events/s/a`);
    const b = await events(`${url}/events/s/b`);
    b.close();
    await until(async () => (await post(`${url}/message/s/a`, { target: 'b', type: 'probe' })).status === 202);
    clock.advance(14_999);
    expect((await post(`${url}/message/s/a`, { target: 'b', type: 'probe' })).status).toBe(202);
    clock.advance(1);
    expect((await a.next(ofType('peer-left'))).json).toEqual({ type: 'peer-left', senderId: 'b' });
    expect((await post(`${url}/message/s/a`, { target: 'b', type: 'probe' })).status).toBe(404);
  });

  test('reconnecting within the timeout keeps the peer and delivers what was held', async () => {
    const clock = new ManualClock();
    const { url } = server({ peerTimeoutMs: 15_000 }, { clock });
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    const a = await events(`${url}/events/s/a`);
    const b = await events(`${url}/events/s/b`);
    await until(() => b.lastEventId !== '');
    b.close();
    await until(async () => (await post(`${url}/message/s/a`, { target: 'b', type: 'held' })).status === 202);
    clock.advance(10_000);
    const back = await events(`${url}/events/s/b`, { lastEventId: b.lastEventId });
    await back.next(ofType('held'));
    clock.advance(60_000);
    expect((await post(`${url}/message/s/a`, { target: 'b', type: 'still-here' })).status).toBe(200);
    expect(a.events.some((e) => e.json.type === 'peer-left')).toBe(false);
  });

  test('a peer that registers and never connects is removed after the timeout too', async () => {
    const clock = new ManualClock();
    const { url } = server({ peerTimeoutMs: 1000 }, { clock });
    await post(`${url}/register/s/a`);
    const a = await events(`${url}/events/s/a`);
    await post(`${url}/register/s/ghost`);
    clock.advance(1000);
    expect((await a.next(ofType('peer-left'))).json.senderId).toBe('ghost');
  });

  test('DELETE /register: the others get peer-left and the leaving stream ends', async () => {
    const { url } = server();
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    const a = await events(`${url}/events/s/a`);
    const b = await events(`${url}/events/s/b`);
    expect((await fetch(`${url}/register/s/b`, { method: 'DELETE' })).status).toBe(200);
    expect((await a.next(ofType('peer-left'))).json).toEqual({ type: 'peer-left', senderId: 'b' });
    await b.ended;
  });

  test('DELETE /session: every peer gets session-closed, then its stream ends', async () => {
    const { url } = server();
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    const a = await events(`${url}/events/s/a`);
    const b = await events(`${url}/events/s/b`);
    await a.next(ofType('new-peer'));
    expect((await fetch(`${url}/session/s`, { method: 'DELETE' })).status).toBe(200);
    for (const s of [a, b]) {
      expect((await s.next(ofType('session-closed'))).json).toEqual({ type: 'session-closed' });
      await s.ended;
    }
    const after = await fetch(`${url}/events/s/a`);
    expect(after.status).toBe(404);
    expect((await after.json()).error).toBe('session_not_found');
  });

  test('re-registering takes the id over: the old stream ends, cannot resume, and the others see new-peer again', async () => {
    const { url } = server();
    await post(`${url}/register/s/viewer`);
    await post(`${url}/register/s/device`);
    const viewer = await events(`${url}/events/s/viewer`);
    const oldDevice = await events(`${url}/events/s/device`);
    await viewer.next(ofType('new-peer', 'device'));
    await post(`${url}/message/s/viewer`, { target: 'device', type: 'offer', payload: 1 });
    await oldDevice.next(ofType('offer'));

    expect((await post(`${url}/register/s/device`)).body.peers).toEqual(['viewer']);
    await oldDevice.ended;
    expect((await viewer.next(ofType('new-peer', 'device'))).json.senderId).toBe('device');
    const stale = await fetch(`${url}/events/s/device`, { headers: { 'last-event-id': oldDevice.lastEventId } });
    expect(stale.status).toBe(409);
    expect((await stale.json()).error).toBe('superseded');
    const newDevice = await events(`${url}/events/s/device`);
    await post(`${url}/message/s/viewer`, { target: 'device', type: 'offer', payload: 2 });
    expect((await newDevice.next(ofType('offer'))).json.payload).toBe(2);
  });
});

describe('a slow reader', () => {
  test('makes messages wait, then is cut off at MAX_QUEUE; on resume it gets every acknowledged message', async () => {
    const { url } = server({ maxQueue: 16, ...floodAllowed });
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    const port = Number(new URL(url).port);
    // A client that asks for its stream, reads the first bytes, then stops reading from the socket.
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('GET /events/s/b HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n');
    let received = '';
    await new Promise<void>((resolve) => socket.once('data', (d) => resolve(void (received += d))));
    socket.pause();
    socket.on('data', (d) => (received += d));

    const payload = 'x'.repeat(4000);
    const statuses: number[] = [];
    // Socket buffers take a few MB; then the stream's own queue fills and messages wait (202);
    // at MAX_QUEUE waiting the sender gets 429 and the stream is cut.
    for (let seq = 0; seq < 20_000; seq++) {
      const { status } = await post(`${url}/message/s/a`, { target: 'b', type: 'seq', payload: { seq, payload } });
      statuses.push(status);
      if (status === 429) break;
    }
    expect(statuses.at(-1)).toBe(429);
    const acknowledged = statuses.filter((s) => s === 200 || s === 202).length;
    expect(statuses.filter((s) => s === 202).length).toBe(16);
    // The stream is ended after what was written: the response completes (the last chunk), and the
    // socket, a keep-alive connection, may stay open.
    socket.resume();
    const ended = () => received.includes('\r\n0\r\n\r\n');
    await Promise.race([closed, until(ended, 'the stream to end')]);
    socket.destroy();

    // The client resumes from the last complete event it read (the cut may have left half of one).
    const complete = [...dechunk(received).matchAll(/^id: (\d+)\ndata: (.*)\n\n/gm)];
    const seqs = complete.map((m) => JSON.parse(m[2] as string).payload.seq as number);
    const ids = complete.map((m) => m[1] as string);
    const resumed = await events(`${url}/events/s/b`, { lastEventId: ids.at(-1) });
    expect(resumed.status).toBe(200);
    while (seqs.length < acknowledged) seqs.push(((await resumed.next(ofType('seq'))).json.payload as { seq: number }).seq);
    expect(seqs).toEqual([...Array(acknowledged).keys()]);
  });

  test('a stream that stays full for a whole ping interval is cut, so the peer can time out', async () => {
    const clock = new ManualClock();
    const { url } = server({ maxQueue: 64, pingIntervalMs: 10_000, ...floodAllowed }, { clock });
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    const socket = net.connect(Number(new URL(url).port), '127.0.0.1');
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('GET /events/s/b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.pause();
    const payload = 'x'.repeat(4000);
    let status = 200;
    while (status === 200) status = (await post(`${url}/message/s/a`, { target: 'b', type: 'x', payload })).status;
    expect(status).toBe(202);
    clock.advance(10_000);
    expect((await post(`${url}/message/s/a`, { target: 'b', type: 'x' })).status).toBe(202);
    clock.advance(10_000);
    socket.resume();
    await closed;
  });
});
