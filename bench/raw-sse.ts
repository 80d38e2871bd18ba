// Server-Sent Events streams that only count what they receive, for holding many open at once: one load
// process holds some 20,000 of them, from several local addresses (see ConnectOptions), so the sockets are
// node:net's rather than Bun.connect's, which cannot choose the local address (raw-http.ts has streams
// on Bun.connect that hand each event over). Bytes are read as latin1, one character per byte, so that
// Content-Length and chunk sizes count characters; event data is not parsed.
import { connect as netConnect, type Socket } from 'node:net';

// Header lines of a response head (status line and headers, each ending in CRLF).
const CHUNKED = /\r\ntransfer-encoding:[^\r]*chunked/i;
const CONTENT_LENGTH = /\r\ncontent-length:\s*(\d+)/i;

/** One response after another on a connection, parsed as its bytes arrive (Content-Length or chunked). */
class ResponseParser {
  private buffer = '';
  private state: 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-end' | 'trailer' = 'head';
  /** Characters of the body, or of the current chunk, still to come. */
  private remaining = 0;

  constructor(
    private readonly onHead: (status: number) => void,
    private readonly onBody: (text: string) => void,
    private readonly onEnd: () => void,
  ) {}

  feed(bytes: Buffer): void {
    this.buffer += bytes.toString('latin1');
    while (this.step());
  }

  /** Takes what it can of the buffer for the current state; false when it needs more bytes. */
  private step(): boolean {
    switch (this.state) {
      case 'head': {
        const end = this.buffer.indexOf('\r\n\r\n');
        if (end < 0) return false;
        const head = this.buffer.slice(0, end + 2);
        this.buffer = this.buffer.slice(end + 4);
        this.onHead(Number(head.slice(9, 12)));
        if (CHUNKED.test(head)) this.state = 'chunk-size';
        else {
          this.remaining = Number(CONTENT_LENGTH.exec(head)?.[1] ?? 0);
          this.state = 'length';
        }
        return true;
      }
      case 'length':
      case 'chunk-data': {
        const piece = this.buffer.slice(0, this.remaining);
        this.buffer = this.buffer.slice(piece.length);
        this.remaining -= piece.length;
        if (piece) this.onBody(piece);
        if (this.remaining > 0) return false;
        if (this.state === 'length') this.end();
        else this.state = 'chunk-end';
        return true;
      }
      case 'chunk-end':
        if (this.buffer.length < 2) return false;
        this.buffer = this.buffer.slice(2);
        this.state = 'chunk-size';
        return true;
      case 'chunk-size': {
        const end = this.buffer.indexOf('\r\n');
        if (end < 0) return false;
        this.remaining = Number.parseInt(this.buffer.slice(0, end), 16);
        this.buffer = this.buffer.slice(end + 2);
        this.state = this.remaining > 0 ? 'chunk-data' : 'trailer';
        return true;
      }
      case 'trailer': {
        // Trailer lines, if any, up to an empty line.
        const end = this.buffer.indexOf('\r\n');
        if (end < 0) return false;
        this.buffer = this.buffer.slice(end + 2);
        if (end === 0) this.end();
        return true;
      }
    }
  }

  private end(): void {
    this.state = 'head';
    this.onEnd();
  }
}

export interface ConnectOptions {
  /**
   * Local address to connect from (127.0.0.2, say, on Linux, where all of 127/8 is loopback). Each
   * address has its own ephemeral ports: past half the port range, Linux spends long in connect()
   * finding a free port to one destination, and the load, not the server, would set the pace.
   */
  localAddress?: string;
}

/** Connects and feeds what arrives to `parser`; `closed` runs once the connection is gone, however it went. */
async function connect(base: string, parser: ResponseParser, closed: () => void, { localAddress }: ConnectOptions = {}): Promise<Socket> {
  const { hostname, port } = new URL(base);
  const socket = await new Promise<Socket>((resolve, reject) => {
    // Small requests leave at once, not when the previous segment is acknowledged (Nagle).
    const s = netConnect({ host: hostname, port: Number(port), localAddress, noDelay: true }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
  socket.on('data', (bytes: Buffer) => parser.feed(bytes));
  // An error is always followed by 'close', which is where the connection's end is handled.
  socket.on('error', () => {});
  socket.on('close', closed);
  return socket;
}

export interface CountedStream {
  /** Events received: blocks with a `data:` line (not the bare `retry:` and `id:` blocks). */
  readonly events: number;
  /** The `ping` events among them. */
  readonly pings: number;
  /** False once the server or `close()` ended the connection. */
  readonly open: boolean;
  close(): void;
}

export interface CountedStreamOptions extends ConnectOptions {
  /** Request headers besides Host and Accept (Authorization, Last-Event-ID). */
  headers?: Record<string, string>;
}

/**
 * Opens `GET path` as an event stream and resolves at its first block (switchboard writes `retry:` at
 * once); rejects with the status and body of any answer other than 200.
 */
export async function openCountedStream(base: string, path: string, options: CountedStreamOptions = {}): Promise<CountedStream> {
  let status = 0;
  let text = '';
  let started: () => void = () => {};
  let failed: (e: Error) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    started = resolve;
    failed = reject;
  });
  let socket: Socket | undefined;
  const stream = {
    events: 0,
    pings: 0,
    open: true,
    close: () => socket?.destroy(),
  };
  const parser = new ResponseParser(
    (s) => (status = s),
    (piece) => {
      text += piece;
      if (status !== 200) return;
      let end: number;
      while ((end = text.indexOf('\n\n')) >= 0) {
        const block = text.slice(0, end);
        text = text.slice(end + 2);
        if (block.includes('data:')) {
          stream.events++;
          if (block.includes('"type":"ping"')) stream.pings++;
        }
        started();
      }
    },
    () => {
      // The stream, or the error answer, ended.
      failed(new Error(`GET ${path}: ${status} ${text}`));
      socket?.destroy();
    },
  );
  const closed = () => {
    stream.open = false;
    failed(new Error(`GET ${path}: closed${status ? ` after ${status}` : ''}`));
  };
  socket = await connect(base, parser, closed, options);
  const extra = Object.entries(options.headers ?? {})
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${new URL(base).host}\r\nAccept: text/event-stream\r\n${extra}\r\n`);
  await ready;
  return stream;
}
