// A TCP proxy on loopback in front of a server. A test can cut it: every connection through it is
// closed at once, both ways, as a dropped network would (the client sees its socket end, the server
// its peer go). With `oneWayMs`, it holds every chunk that long in each direction: the server a round
// trip of twice that away, for benchmarks of what a real network's signalling costs (HTTP, its
// streams and WebSockets pass through unchanged and in order; a browser's media, over UDP, does not).
import type { Socket } from 'bun';

export interface TcpProxy {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Closes every open connection. */
  cut(): void;
  stop(): Promise<void>;
}

export interface TcpProxyOptions {
  /** Each chunk is handed on this long after it came, in each direction (0: at once). */
  oneWayMs?: number;
}

/** One direction of a proxied connection: the socket it writes to, and what that socket did not take yet. */
interface Direction {
  to: Socket<unknown> | undefined;
  /** Chunks due before `to` connected, or that the socket did not take at once (the rest on drain). */
  queued: Uint8Array[];
  /** The other side closed: end this one once the queue is written. */
  ending: boolean;
}

interface Pipe {
  /** Client → upstream. */
  up: Direction;
  /** Upstream → client. */
  down: Direction;
}

const direction = (): Direction => ({ to: undefined, queued: [], ending: false });

function flush(d: Direction): void {
  const socket = d.to;
  if (!socket) return;
  while (d.queued.length) {
    const chunk = d.queued[0] as Uint8Array;
    const written = socket.write(chunk);
    if (written < chunk.byteLength) {
      d.queued[0] = chunk.subarray(Math.max(0, written));
      return;
    }
    d.queued.shift();
  }
  if (d.ending) socket.end();
}

export async function startTcpProxy(upstream: string, { oneWayMs = 0 }: TcpProxyOptions = {}): Promise<TcpProxy> {
  const target = new URL(upstream);
  /** Runs `fn` after the one-way delay; timers of one delay fire in order, so chunks stay in order. */
  const later = (fn: () => void) => (oneWayMs > 0 ? void setTimeout(fn, oneWayMs) : fn());
  // Copied: Bun reuses the buffer it hands to `data`.
  const pass = (d: Direction, chunk: Uint8Array) => {
    const copy = chunk.slice();
    later(() => {
      d.queued.push(copy);
      flush(d);
    });
  };
  const end = (d: Direction) =>
    later(() => {
      d.ending = true;
      flush(d);
    });
  const open = new Set<Socket<Pipe>>();
  let connections = 0;
  const listener = Bun.listen<Pipe>({
    hostname: '127.0.0.1',
    port: 0,
    socket: {
      open(client) {
        connections++;
        const pipe: Pipe = { up: direction(), down: direction() };
        pipe.down.to = client as Socket<unknown>;
        client.data = pipe;
        open.add(client);
        Bun.connect<Pipe>({
          hostname: target.hostname,
          port: Number(target.port),
          data: pipe,
          socket: {
            open(server) {
              pipe.up.to = server as Socket<unknown>;
              flush(pipe.up);
            },
            data: (_, chunk) => pass(pipe.down, chunk),
            drain: () => flush(pipe.up),
            close: () => end(pipe.down),
            error: () => end(pipe.down),
          },
        }).catch(() => client.end());
      },
      data: (client, chunk) => pass(client.data.up, chunk),
      drain: (client) => flush(client.data.down),
      close(client) {
        open.delete(client);
        end(client.data.up);
      },
      error: (client) => end(client.data.up),
    },
  });
  return {
    url: `http://127.0.0.1:${listener.port}`,
    get connections() {
      return connections;
    },
    cut() {
      for (const client of open) {
        client.data.up.to?.terminate();
        client.terminate();
      }
      open.clear();
    },
    async stop() {
      for (const client of open) client.terminate();
      listener.stop(true);
    },
  };
}
