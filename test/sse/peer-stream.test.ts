// One stream's own rules, read through its response body (as app.handle's caller reads it) and over a
// real listener where the socket matters: what is written before the response starts, the bound on
// what waits once the socket is full, and each way it ends.
import { afterEach, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WriteBatcher } from '../../src/delivery/write-batcher';
import { Heartbeat } from '../../src/sse/heartbeat';
import { PeerStream, STREAM_HEADERS } from '../../src/sse/peer-stream';
import { selfSignedCertificate } from '../fixtures/certificate';
import { ManualClock, until } from '../helpers';

const MAX_QUEUED = 4;

function stream() {
  const heartbeat = new Heartbeat(new ManualClock(), 10_000);
  const ended: string[] = [];
  const s = new PeerStream({ heartbeat, maxQueued: MAX_QUEUED, retryMs: 1000, batcher: new WriteBatcher() }, { onEnd: () => ended.push('end') });
  return { s, heartbeat, ended };
}

/** Everything the body gives until it ends, or `until` is in it. */
async function bodyOf(body: ReadableStream, until?: string): Promise<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return text;
    text += decoder.decode(value);
    if (until && text.includes(until)) {
      reader.releaseLock();
      return text;
    }
  }
}

describe('a stream read through its body', () => {
  test('the retry frame comes first, then what was written before the body was read, then what comes after', async () => {
    const { s } = stream();
    s.begin(4);
    expect(s.write(5, '"n":5}')).toBe(true);
    const first = bodyOf(s.body, '"n":6');
    expect(s.write(6, '"n":6}')).toBe(true);
    expect(await first).toBe('retry: 1000\n\nid: 4\n\nid: 5\ndata: {"n":5}\n\nid: 6\ndata: {"n":6}\n\n');
    s.close();
    expect(await bodyOf(s.body)).toBe('');
  });

  test('before the body is read, at most maxQueued frames wait; the rest is refused until it starts, then the mailbox is told', async () => {
    const { s } = stream();
    let drains = 0;
    s.onDrain(() => drains++);
    for (let id = 1; id <= MAX_QUEUED; id++) expect(s.write(id, `{"n":${id}}`)).toBe(true);
    expect(s.write(MAX_QUEUED + 1, '"n":5}')).toBe(false);
    const text = await bodyOf(s.body, `"n":${MAX_QUEUED}`);
    expect(text.match(/^id: \d+$/gm)).toEqual(['id: 1', 'id: 2', 'id: 3', 'id: 4']);
    await until(() => drains === 1, 'the drain');
    expect(s.write(MAX_QUEUED + 1, '"n":5}')).toBe(true);
  });

  test('closed before the body is read: what was written is still given, then the end', async () => {
    const { s, heartbeat, ended } = stream();
    let closed = 0;
    s.onClose(() => closed++);
    s.write(1, '"n":1}');
    s.close();
    expect([s.isOpen, closed, ended, heartbeat.size]).toEqual([false, 1, ['end'], 0]);
    expect(await bodyOf(s.body)).toBe('retry: 1000\n\nid: 1\ndata: {"n":1}\n\n');
    expect(s.write(2, '"n":2}')).toBe(false);
  });

  test('aborted before the body is read: the body fails, and nothing written is given', async () => {
    const { s, ended } = stream();
    s.write(1, '"n":1}');
    s.abort('refused');
    expect(ended).toEqual(['end']);
    await expect(bodyOf(s.body)).rejects.toThrow('refused');
  });

  test('it ends once, however many ways it then ends', () => {
    const { s, ended } = stream();
    s.close();
    s.abort('again');
    s.close();
    expect([s.isOpen, ended]).toEqual([false, ['end']]);
  });
});

describe("a started stream's writes", () => {
  /** A stream started on a sink that records what it is given, the retry frame left out. */
  function started() {
    const { s, ended } = stream();
    const sink: string[] = [];
    const controller = {
      write: (chunk: string) => sink.push(chunk) && chunk.length,
      close: (error?: Error) => void sink.push(error ? `close: ${error.message}` : 'close'),
    };
    s.pull(controller as unknown as ReadableStreamDirectController);
    sink.length = 0;
    return { s, sink, ended };
  }
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

  test('the frames of a turn of the loop reach the sink together, after it', async () => {
    const { s, sink } = started();
    s.write(1, '"n":1}');
    s.write(2, '"n":2}');
    s.ping('"type":"ping"}');
    expect(sink).toEqual([]);
    await turn();
    expect(sink).toEqual(['id: 1\ndata: {"n":1}\n\nid: 2\ndata: {"n":2}\n\nid: 2\ndata: {"type":"ping"}\n\n']);
    s.write(3, '"n":3}');
    await turn();
    expect(sink).toEqual(['id: 1\ndata: {"n":1}\n\nid: 2\ndata: {"n":2}\n\nid: 2\ndata: {"type":"ping"}\n\n', 'id: 3\ndata: {"n":3}\n\n']);
  });

  test('a close waits for the turn too, after what was written before it; an abort drops that', async () => {
    const closed = started();
    closed.s.write(1, '"n":1}');
    closed.s.close();
    expect([closed.s.isOpen, closed.ended, closed.sink]).toEqual([false, ['end'], []]);
    const aborted = started();
    aborted.s.write(1, '"n":1}');
    aborted.s.abort('the reader stalled');
    await turn();
    expect(closed.sink).toEqual(['id: 1\ndata: {"n":1}\n\n', 'close']);
    expect(aborted.sink).toEqual(['close: the reader stalled']);
  });

  test('a batch past 64 KiB is written at once', () => {
    const { s, sink } = started();
    const payload = `"x":${JSON.stringify('x'.repeat(40_000))}}`;
    s.write(1, payload);
    expect(sink).toEqual([]);
    s.write(2, payload);
    expect(sink).toHaveLength(1);
    expect(sink[0]?.match(/^id: \d+$/gm)).toEqual(['id: 1', 'id: 2']);
  });
});

describe('a stream over a real listener', () => {
  const stops: (() => void)[] = [];
  afterEach(() => {
    for (const stop of stops.splice(0)) stop();
  });

  /** A listener whose every request gets `s`'s response, and a raw client that reads until told to stop. */
  async function served(s: PeerStream) {
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch(request, srv) {
        srv.timeout(request, 0);
        return new Response(s.body, { headers: STREAM_HEADERS });
      },
    });
    const socket: Socket = connect(server.port as number, '127.0.0.1');
    socket.on('error', () => {});
    let received = '';
    socket.on('data', (d) => {
      received += d.toString('latin1');
    });
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    stops.push(() => {
      socket.destroy();
      server.stop(true);
    });
    socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await until(() => received.includes('retry: 1000'), 'the retry frame');
    return { socket, closed, received: () => received };
  }

  test('once the socket is full, maxQueued frames more are taken, then none until it drains; then all of them arrive', async () => {
    const { s } = stream();
    let drains = 0;
    s.onDrain(() => drains++);
    const client = await served(s);
    client.socket.pause();
    const payload = JSON.stringify('x'.repeat(16_000));
    let id = 0;
    // Socket buffers take a few MB before the sink says it is full.
    while (s.write(id + 1, payload)) id++;
    expect(id).toBeGreaterThan(MAX_QUEUED);
    expect(s.write(id + 1, payload)).toBe(false);
    expect(drains).toBe(0);
    client.socket.resume();
    await until(() => drains === 1, 'the drain', 10_000);
    expect(s.write(id + 1, payload)).toBe(true);
    await until(() => client.received().includes(`id: ${id + 1}\n`), 'every frame', 10_000);
  });

  test('full at two pings in a row: the reader stalled, and the stream is cut', async () => {
    const { s, ended } = stream();
    const client = await served(s);
    client.socket.pause();
    const payload = JSON.stringify('x'.repeat(16_000));
    let id = 0;
    while (s.write(id + 1, payload)) id++;
    s.ping('{"type":"ping"}');
    expect(s.isOpen).toBe(true);
    s.ping('{"type":"ping"}');
    expect([s.isOpen, ended]).toEqual([false, ['end']]);
    // Cut, not ended: the response never gets its last chunk.
    client.socket.resume();
    await client.closed;
    expect(client.received()).not.toContain('\r\n0\r\n\r\n');
  });

  test('a client that goes away ends the stream', async () => {
    const { s, ended } = stream();
    const client = await served(s);
    client.socket.destroy();
    await until(() => ended.length === 1, 'the end');
    expect(s.write(1, '{}')).toBe(false);
  });

  // The stream listens to no abort signal of the request: Bun cancelling its body is the one way it
  // learns that the client went away, in each of the ways below too.
  test('a client that goes away before its response is made ends the stream once it is', async () => {
    const { s, ended, heartbeat } = stream();
    let asked = false;
    let respond: () => void = () => {};
    const made = new Promise<void>((resolve) => {
      respond = resolve;
    });
    // As the route does: the stream exists, then the peer is let in (a round trip to Redis, say), then the response is made.
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      async fetch(request, srv) {
        srv.timeout(request, 0);
        asked = true;
        await made;
        return new Response(s.body, { headers: STREAM_HEADERS });
      },
    });
    stops.push(() => server.stop(true));
    const socket: Socket = connect(server.port as number, '127.0.0.1');
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await until(() => asked, 'the request');
    socket.destroy();
    await closed;
    expect(ended).toEqual([]);
    respond();
    await until(() => ended.length === 1, 'the end');
    expect([s.isOpen, heartbeat.size]).toEqual([false, 0]);
  });

  test('over HTTP/2, a stream the client resets ends, and so does one whose connection closes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchboard-h2-'));
    stops.push(() => rmSync(dir, { recursive: true, force: true }));
    const { cert, key } = selfSignedCertificate(dir);
    const streams = [stream(), stream(), stream()];
    let next = 0;
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      tls: { cert, key },
      http2: true,
      fetch(request, srv) {
        srv.timeout(request, 0);
        return new Response((streams[next++] as ReturnType<typeof stream>).s.body, { headers: STREAM_HEADERS });
      },
    } as Parameters<typeof Bun.serve>[0]);
    stops.push(() => server.stop(true));
    const session = http2.connect(`https://127.0.0.1:${server.port}`, { ca: cert });
    session.on('error', () => {});
    stops.push(() => session.destroy());
    const open = async () => {
      const request = session.request({ ':path': '/events/s/p' });
      request.on('error', () => {});
      let text = '';
      request.on('data', (chunk: Buffer) => {
        text += chunk.toString();
      });
      await until(() => text.includes('retry: 1000'), 'the retry frame over h2');
      return request;
    };
    const [reset, other, last] = streams as [ReturnType<typeof stream>, ReturnType<typeof stream>, ReturnType<typeof stream>];
    (await open()).close(http2.constants.NGHTTP2_CANCEL);
    await open();
    await open();
    await until(() => reset.ended.length === 1, 'the reset stream to end');
    // The connection's other streams are not touched by one stream's reset.
    expect([other.s.isOpen, last.s.isOpen]).toEqual([true, true]);
    session.destroy();
    await until(() => other.ended.length === 1 && last.ended.length === 1, 'both streams of the closed connection to end');
  });
});
