// A minimal HTTP/1.1 client on Bun's TCP sockets, for load generation: one load process must drive tens of
// thousands of requests per second on one core, which `fetch` cannot. A connection is kept alive and takes
// requests pipelined (several written before the first answer, in one write); answers are handed over in
// order as a status and the body's bytes, never decoded. `openEventStream` reads a `text/event-stream`
// answer the same way and hands over each event's bytes.
import type { Socket } from 'bun';
import { drainPending, type PendingWrites, writeAll } from './socket-writes';

const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');
const EVENT_END = Buffer.from('\n\n');

/** One request as bytes: what `HttpConnection.send` writes. Content-Length is set from `body`. */
export function encodeRequest(method: string, path: string, host: string, body?: string, headers: Record<string, string> = {}): Buffer {
  let head = `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  if (body !== undefined) head += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
  return Buffer.from(`${head}\r\n${body ?? ''}`);
}

/** Where the bytes of a connection go: fields a caller replaces. */
interface Handlers {
  /** The bytes of every read, in order (the socket's `data`). */
  onBytes: (bytes: Buffer) => void;
}

interface SocketState extends Handlers, PendingWrites {
  closed: () => void;
  failed: (e: Error) => void;
}

async function connectSocket(base: string): Promise<{ socket: Socket<SocketState>; closed: Promise<void> }> {
  const { hostname, port } = new URL(base);
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  const state: SocketState = { onBytes: () => {}, pending: [], closed: resolveClosed, failed: () => {} };
  const socket = await Bun.connect<SocketState>({
    hostname,
    port: Number(port),
    data: state,
    socket: {
      data: (s, bytes) => s.data.onBytes(bytes),
      drain: drainPending,
      close: (s) => {
        s.data.failed(new Error('connection closed'));
        s.data.closed();
      },
      error: (s, error) => s.data.failed(error),
    },
  });
  // Small requests leave at once, not when the previous one is acknowledged (Nagle).
  socket.setNoDelay(true);
  return { socket, closed };
}

const lower = (byte: number) => byte | 0x20;

/** A copy of bytes `from`…`to` (Buffer's slice is a view; a leftover must not pin the read's buffer). */
function copyOf(buf: Buffer, from: number, to = buf.length): Buffer {
  const out = Buffer.allocUnsafe(to - from);
  buf.copy(out, 0, from, to);
  return out;
}

/** Whether the header line at `at` is named `name` (lowercase, with its colon), in any case. */
function isHeader(buf: Buffer, at: number, end: number, name: string): boolean {
  if (end - at < name.length) return false;
  for (let i = 0; i < name.length; i++) if (lower(buf[at + i] as number) !== name.charCodeAt(i)) return false;
  return true;
}

function readInteger(buf: Buffer, at: number, end: number, radix: 10 | 16): number {
  let value = 0;
  for (let i = at; i < end; i++) {
    const c = buf[i] as number;
    if (c === 0x20) continue;
    const digit = c >= 0x30 && c <= 0x39 ? c - 0x30 : radix === 16 && lower(c) >= 0x61 && lower(c) <= 0x66 ? lower(c) - 0x57 : -1;
    if (digit < 0) break;
    value = value * radix + digit;
  }
  return value;
}

/** The framing of a response body, from its head (bytes `start`…`end`, the status line included). */
function bodyFraming(buf: Buffer, start: number, end: number): { length: number; chunked: boolean } {
  let length = -1;
  let chunked = false;
  let line = buf.indexOf(CRLF, start) + 2;
  while (line < end) {
    let next = buf.indexOf(CRLF, line);
    if (next < 0 || next > end) next = end;
    const first = lower(buf[line] as number);
    if (first === 0x63 && isHeader(buf, line, next, 'content-length:')) length = readInteger(buf, line + 15, next, 10);
    else if (first === 0x74 && isHeader(buf, line, next, 'transfer-encoding:')) {
      const at = buf.indexOf('chunked', line);
      chunked = at >= 0 && at < next;
    }
    line = next + 2;
  }
  return { length, chunked };
}

/** The status code of a status line starting at `at` ("HTTP/1.1 200 …"). */
const statusAt = (buf: Buffer, at: number) => readInteger(buf, at + 9, at + 12, 10);

export interface HttpConnection {
  /** Writes requests (from `encodeRequest`, one or several back to back) in one write; answers come in order. */
  send(requests: Buffer): void;
  /** Each answer's status and body, `bytes` from `start` to `end` (valid only until the callback returns). */
  onResponse: (status: number, bytes: Buffer, start: number, end: number) => void;
  /** Called after the answers of one read from the socket: where requests they free go out in one write. */
  onRead: () => void;
  close(): void;
  readonly closed: Promise<void>;
}

/**
 * A keep-alive connection to `base` (http://host:port) taking pipelined requests. Answers must have a
 * Content-Length or be chunked; a body is gathered whole before it is handed over.
 */
export async function connectHttp(base: string): Promise<HttpConnection> {
  const { socket, closed } = await connectSocket(base);
  let rest: Buffer | undefined;
  const connection: HttpConnection = {
    onResponse: () => {},
    onRead: () => {},
    send: (requests) => writeAll(socket, requests),
    close: () => socket.end(),
    closed,
  };
  socket.data.onBytes = (bytes) => {
    const buf = rest ? Buffer.concat([rest, bytes]) : bytes;
    let at = 0;
    for (;;) {
      const headEnd = buf.indexOf(HEAD_END, at);
      if (headEnd < 0) break;
      const { length, chunked } = bodyFraming(buf, at, headEnd);
      const bodyStart = headEnd + 4;
      if (chunked) {
        const dechunked = readChunkedBody(buf, bodyStart);
        if (!dechunked) break;
        connection.onResponse(statusAt(buf, at), dechunked.body, 0, dechunked.body.length);
        at = dechunked.next;
      } else {
        const bodyEnd = bodyStart + Math.max(0, length);
        if (buf.length < bodyEnd) break;
        connection.onResponse(statusAt(buf, at), buf, bodyStart, bodyEnd);
        at = bodyEnd;
      }
    }
    rest = at < buf.length ? copyOf(buf, at) : undefined;
    connection.onRead();
  };
  return connection;
}

/** A whole chunked body starting at `at`, or undefined while its last chunk has not arrived. */
function readChunkedBody(buf: Buffer, at: number): { body: Buffer; next: number } | undefined {
  const parts: Buffer[] = [];
  for (;;) {
    const lineEnd = buf.indexOf(CRLF, at);
    if (lineEnd < 0) return undefined;
    const size = readInteger(buf, at, lineEnd, 16);
    const start = lineEnd + 2;
    if (buf.length < start + size + 2) return undefined;
    if (size === 0) return { body: Buffer.concat(parts), next: start + 2 };
    parts.push(buf.subarray(start, start + size));
    at = start + size + 2;
  }
}

export interface EventHandlers {
  /**
   * Each event block's bytes, `start`…`end` of `buf` (its lines, without the blank line that ends it;
   * valid only until the call returns). `retry:` and bare `id:` blocks are handed over too.
   */
  onEvent(buf: Buffer, start: number, end: number): void;
  /** Called after the events of one read from the socket. */
  onRead?(): void;
}

export interface EventStream {
  close(): void;
  readonly closed: Promise<void>;
}

/**
 * Sends `GET path` and resolves once the answer's head says 200 (else rejects with the answer); every
 * event of the stream goes to `handlers`, from the first (which may come with the head). The body is
 * chunked (Bun's streamed answers) or runs to the end of the connection. Events are found by their blank
 * line; nothing is decoded.
 */
export async function openEventStream(base: string, path: string, handlers: EventHandlers, headers: Record<string, string> = {}): Promise<EventStream> {
  const { socket, closed } = await connectSocket(base);
  const stream: EventStream = { close: () => socket.end(), closed };
  let resolveOpen!: () => void;
  let rejectOpen!: (e: Error) => void;
  const opened = new Promise<void>((resolve, reject) => {
    resolveOpen = resolve;
    rejectOpen = reject;
  });
  socket.data.failed = rejectOpen;

  let head: Buffer | undefined = Buffer.alloc(0);
  let chunked = false;
  /** Bytes left in the current chunk; -1 while its size line is awaited. */
  let chunkLeft = -1;
  /** An incomplete size line, or an incomplete event, carried to the next read. */
  let sizeLine: Buffer | undefined;
  let partial: Buffer | undefined;

  /** Body bytes `from`…`to` of `buf`, in order: complete events are handed over in place. */
  const events = (data: Buffer, from: number, to: number) => {
    let buf = data;
    if (partial) {
      buf = Buffer.concat([partial, data.subarray(from, to)]);
      partial = undefined;
      from = 0;
      to = buf.length;
    }
    let at = from;
    for (;;) {
      const end = buf.indexOf(EVENT_END, at);
      if (end < 0 || end + 2 > to) break;
      handlers.onEvent(buf, at, end);
      at = end + 2;
    }
    if (at < to) partial = copyOf(buf, at, to);
  };

  const body = (buf: Buffer, at: number) => {
    if (!chunked) return events(buf, at, buf.length);
    while (at < buf.length) {
      if (chunkLeft < 0) {
        if (sizeLine) {
          buf = Buffer.concat([sizeLine, buf.subarray(at)]);
          at = 0;
          sizeLine = undefined;
        }
        // Every chunk's data is followed by CRLF; skip it if it opens this read.
        if (buf[at] === 0x0d && buf[at + 1] === 0x0a) at += 2;
        const lineEnd = buf.indexOf(CRLF, at);
        if (lineEnd < 0) {
          sizeLine = copyOf(buf, at);
          return;
        }
        chunkLeft = readInteger(buf, at, lineEnd, 16);
        at = lineEnd + 2;
        if (chunkLeft === 0) {
          socket.end();
          return;
        }
      }
      const take = Math.min(chunkLeft, buf.length - at);
      events(buf, at, at + take);
      chunkLeft -= take;
      at += take;
      if (chunkLeft === 0) chunkLeft = -1;
    }
  };

  socket.data.onBytes = (bytes) => {
    if (head) {
      const buf: Buffer = head.length ? Buffer.concat([head, bytes]) : bytes;
      const headEnd = buf.indexOf(HEAD_END);
      if (headEnd < 0) {
        head = Buffer.from(buf);
        return;
      }
      const status = statusAt(buf, 0);
      if (status !== 200) {
        rejectOpen(new Error(`GET ${path}: ${buf.toString('latin1', 0, Math.min(buf.length, headEnd + 400))}`));
        socket.end();
        return;
      }
      chunked = bodyFraming(buf, 0, headEnd).chunked;
      head = undefined;
      resolveOpen();
      body(buf, headEnd + 4);
    } else body(bytes, 0);
    handlers.onRead?.();
  };
  socket.write(encodeRequest('GET', path, new URL(base).host, undefined, { Accept: 'text/event-stream', ...headers }));
  await opened;
  return stream;
}
