/** A WebSocket client on a bare TCP socket, for tests that must stop reading (which no WebSocket API can). */
import net from 'node:net';

export interface RawSocket {
  socket: net.Socket;
  /** Text frames received so far, in order. */
  readonly texts: string[];
  /** Resolves when the TCP connection has closed. */
  closed: Promise<void>;
  pause(): void;
  resume(): void;
}

/** Connects to `path` on `url`'s host, completes the upgrade, then collects text frames. */
export async function openRawSocket(url: string, path: string): Promise<RawSocket> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64');
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  const texts: string[] = [];
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
        if (opcode === 1) texts.push(buffer.subarray(offset, offset + length).toString());
        buffer = buffer.subarray(offset + length);
      }
    });
  });
  return { socket, texts, closed, pause: () => socket.pause(), resume: () => socket.resume() };
}
