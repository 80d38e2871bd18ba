// A minimal WebSocket client on Bun's TCP sockets, for load generation: one load process must drive well
// over 100 k frames per second each way, which an event-per-frame WebSocket API cannot on one core.
// It masks with an all-zero key (a valid key, and masking then costs nothing), writes several frames in
// one call, and hands frames over as byte ranges without decoding them.
import type { Socket } from 'bun';
import { drainPending, type PendingWrites, writeAll } from './socket-writes';

export interface RawWebSocket {
  /** Sends text frames in one write. */
  send(...texts: string[]): void;
  /** Called for each text frame with its payload bytes (valid until the callback returns). */
  onText: (payload: Uint8Array) => void;
  /** Called after the frames of one read from the socket: where replies to all of them go out in one write. */
  onRead: () => void;
  close(): void;
  readonly closed: Promise<void>;
}

const encoder = new TextEncoder();

function frame(text: string): Uint8Array {
  const body = encoder.encode(text);
  const n = body.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(head + 4 + n);
  out[0] = 0x81; // FIN, text
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) {
    out[1] = 0x80 | 126;
    out[2] = n >> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setBigUint64(2, BigInt(n));
  }
  // Bytes head…head+3 are the mask key, left zero: the payload goes as it is.
  out.set(body, head + 4);
  return out;
}

interface State extends PendingWrites {
  ws: RawWebSocket;
  upgraded: boolean;
  buffer: Uint8Array | undefined;
  /** A message's earlier fragments, while its last has not come. */
  fragments: Uint8Array[];
  opened: () => void;
  failed: (e: Error) => void;
  ended: () => void;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function readFrames(socket: Socket<State>, state: State, data: Uint8Array): void {
  let buf = state.buffer ? concat(state.buffer, data) : data;
  if (!state.upgraded) {
    const text = Buffer.from(buf.buffer, buf.byteOffset, buf.length).toString('latin1');
    const end = text.indexOf('\r\n\r\n');
    if (end < 0) {
      state.buffer = buf.slice();
      return;
    }
    if (!text.startsWith('HTTP/1.1 101')) {
      state.failed(new Error(`upgrade refused: ${text.slice(0, text.indexOf('\r\n'))}`));
      socket.end();
      return;
    }
    state.upgraded = true;
    state.opened();
    buf = buf.subarray(end + 4);
  }
  let offset = 0;
  while (buf.length - offset >= 2) {
    const opcode = (buf[offset] as number) & 0x0f;
    let length = (buf[offset + 1] as number) & 0x7f;
    let start = offset + 2;
    if (length === 126) {
      if (buf.length - offset < 4) break;
      length = ((buf[offset + 2] as number) << 8) | (buf[offset + 3] as number);
      start = offset + 4;
    } else if (length === 127) {
      if (buf.length - offset < 10) break;
      length = Number(new DataView(buf.buffer, buf.byteOffset + offset + 2, 8).getBigUint64(0));
      start = offset + 10;
    }
    if (buf.length < start + length) break;
    const payload = buf.subarray(start, start + length);
    const fin = ((buf[offset] as number) & 0x80) !== 0;
    if ((opcode === 1 || opcode === 0) && !fin) state.fragments.push(payload.slice());
    else if (opcode === 0 || (opcode === 1 && state.fragments.length)) {
      state.ws.onText(new Uint8Array(Buffer.concat([...state.fragments.splice(0), payload])));
    } else if (opcode === 1) state.ws.onText(payload);
    else if (opcode === 9)
      writeAll(socket, concat(new Uint8Array([0x8a, 0x80 | payload.length, 0, 0, 0, 0]), payload)); // ping → pong
    else if (opcode === 8) socket.end();
    offset = start + length;
  }
  state.buffer = offset < buf.length ? buf.slice(offset) : undefined;
  state.ws.onRead();
}

/**
 * Connects to a ws:// URL and resolves once the upgrade is done. Frames the server wrote together with
 * its 101 reach the handlers given here (those set on the socket later see only what comes after).
 */
export async function connectRaw(url: string, handlers: Partial<Pick<RawWebSocket, 'onText' | 'onRead'>> = {}): Promise<RawWebSocket> {
  const { hostname, port, pathname, search } = new URL(url);
  let resolveOpen!: () => void;
  let rejectOpen!: (e: Error) => void;
  let resolveClosed!: () => void;
  const opened = new Promise<void>((resolve, reject) => {
    resolveOpen = resolve;
    rejectOpen = reject;
  });
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  let socketRef: Socket<State> | undefined;
  const ws: RawWebSocket = {
    onText: handlers.onText ?? (() => {}),
    onRead: handlers.onRead ?? (() => {}),
    send(...texts) {
      if (!socketRef) return;
      if (texts.length === 1) return writeAll(socketRef, frame(texts[0] as string));
      const frames = texts.map(frame);
      const out = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
      let at = 0;
      for (const f of frames) {
        out.set(f, at);
        at += f.length;
      }
      writeAll(socketRef, out);
    },
    close() {
      // Close frame 1000, then end.
      socketRef?.write(new Uint8Array([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]));
      socketRef?.end();
    },
    closed,
  };
  const state: State = { ws, upgraded: false, buffer: undefined, pending: [], fragments: [], opened: resolveOpen, failed: rejectOpen, ended: resolveClosed };
  socketRef = await Bun.connect<State>({
    hostname,
    port: Number(port),
    data: state,
    socket: {
      data: (socket, data) => readFrames(socket, socket.data, data),
      drain: drainPending,
      close: (socket) => {
        socket.data.failed(new Error('closed'));
        socket.data.ended();
      },
      error: (socket, error) => socket.data.failed(error),
    },
  });
  // Small frames leave at once, not when the previous one is acknowledged (Nagle).
  socketRef.setNoDelay(true);
  const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64');
  socketRef.write(
    `GET ${pathname}${search} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await opened;
  return ws;
}
