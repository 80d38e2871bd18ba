// A TCP proxy on loopback that holds every chunk for `oneWayMs` in each direction: a server reached
// over a round trip of twice that, for what a browser's signalling costs on a real network. HTTP, its
// streams and WebSockets pass through unchanged and in order; only TCP goes through it (a browser's
// media, over UDP, does not).
import type { Socket } from 'bun';

export interface DelayProxy {
  /** `http://127.0.0.1:<port>`: the upstream, `oneWayMs` further away each way. */
  readonly url: string;
  stop(): void;
}

/** One direction of a proxied connection: the socket it writes to, and what it could not write yet. */
interface Direction {
  to: Socket<unknown> | undefined;
  /** Chunks due before `to` connected, or that the socket did not take at once. */
  queued: Uint8Array[];
  /** The other side closed: end this one once the queue is written. */
  ending: boolean;
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
      return; // the rest on drain
    }
    d.queued.shift();
  }
  if (d.ending) socket.end();
}

/** Hands `chunk` (copied: Bun reuses its buffer) to `d` after `ms`. */
function later(d: Direction, chunk: Uint8Array, ms: number): void {
  const copy = chunk.slice();
  setTimeout(() => {
    d.queued.push(copy);
    flush(d);
  }, ms);
}

function endLater(d: Direction, ms: number): void {
  setTimeout(() => {
    d.ending = true;
    flush(d);
  }, ms);
}

interface Pair {
  /** Client → upstream. */
  up: Direction;
  /** Upstream → client. */
  down: Direction;
}

export function startDelayProxy(upstream: string, oneWayMs: number): DelayProxy {
  const { hostname, port } = new URL(upstream);
  const listener = Bun.listen<Pair>({
    hostname: '127.0.0.1',
    port: 0,
    socket: {
      open(client) {
        const pair: Pair = { up: direction(), down: direction() };
        pair.down.to = client as Socket<unknown>;
        client.data = pair;
        Bun.connect<Pair>({
          hostname,
          port: Number(port),
          data: pair,
          socket: {
            open(server) {
              pair.up.to = server as Socket<unknown>;
              flush(pair.up);
            },
            data: (_server, chunk) => later(pair.down, chunk, oneWayMs),
            drain: () => flush(pair.up),
            close: () => endLater(pair.down, oneWayMs),
            error: () => endLater(pair.down, oneWayMs),
          },
        }).catch(() => client.end());
      },
      data: (client, chunk) => later(client.data.up, chunk, oneWayMs),
      drain: (client) => flush(client.data.down),
      close: (client) => endLater(client.data.up, oneWayMs),
      error: (client) => endLater(client.data.up, oneWayMs),
    },
  });
  return { url: `http://127.0.0.1:${listener.port}`, stop: () => listener.stop(true) };
}
