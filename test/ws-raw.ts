/** A WebSocket client on a bare TCP socket, for tests that must stop reading (which no WebSocket API can). */
import net from 'node:net';

export interface RawSocket {
  socket: net.Socket;
  /** Text frames received so far, in order. */
  readonly texts: string[];
  /** WebSocket pings received so far. */
  readonly pings: number;
  /** Sends a text frame (masked, as a client must). */
  send(text: string): void;
  /** Resolves when the TCP connection has closed. */
  closed: Promise<void>;
  pause(): void;
  resume(): void;
}

/** A client frame: FIN, opcode, mask bit and length, a zero mask key (valid, and it leaves the payload as is). */
function clientFrame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, 0x80 | n]) : Buffer.from([0x80 | opcode, 0x80 | 126, n >> 8, n & 0xff]);
  return Buffer.concat([head, Buffer.alloc(4), payload]);
}

/**
 * Connects to `path` on `url`'s host, completes the upgrade, then collects text frames. It answers
 * WebSocket pings only with `autoPong`, as a client that lost power would not.
 */
export async function openRawSocket(url: string, path: string, options: { autoPong?: boolean } = {}): Promise<RawSocket> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64');
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  const texts: string[] = [];
  let pings = 0;
  let buffer = Buffer.alloc(0);
  let upgraded = false;
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!upgraded) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffer.subarray(0, end).toString();
        if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(`no upgrade: ${head}`));
        upgraded = true;
        buffer = buffer.subarray(end + 4);
        resolve();
      }
      // Server frames are unmasked: FIN/opcode byte, then a 7-, 16- or 64-bit length.
      for (;;) {
        if (buffer.length < 2) return;
        const opcode = (buffer[0] as number) & 0x0f;
        let length = (buffer[1] as number) & 0x7f;
        let offset = 2;
        if (length === 126) {
          if (buffer.length < 4) return;
          length = buffer.readUInt16BE(2);
          offset = 4;
        } else if (length === 127) {
          if (buffer.length < 10) return;
          length = Number(buffer.readBigUInt64BE(2));
          offset = 10;
        }
        if (buffer.length < offset + length) return;
        const payload = buffer.subarray(offset, offset + length);
        if (opcode === 1) texts.push(payload.toString());
        if (opcode === 9) {
          pings++;
          if (options.autoPong) socket.write(clientFrame(0xa, Buffer.from(payload)));
        }
        buffer = buffer.subarray(offset + length);
      }
    });
  });
  return {
    socket,
    texts,
    get pings() {
      return pings;
    },
    send: (text) => void socket.write(clientFrame(1, Buffer.from(text))),
    closed,
    pause: () => socket.pause(),
    resume: () => socket.resume(),
  };
}
