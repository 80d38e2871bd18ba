// A TCP proxy in front of a server that a test can cut: every connection through it is closed at once,
// both ways, as a dropped network would (the client sees its socket end, the server its peer go).
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

interface Pipe {
  upstream?: Socket<undefined>;
  /** What the client sent before the upstream connection was up. */
  pending: Uint8Array[];
}

export async function startTcpProxy(upstream: string): Promise<TcpProxy> {
  const target = new URL(upstream);
  const open = new Set<Socket<Pipe>>();
  let connections = 0;
  const listener = Bun.listen<Pipe>({
    hostname: '127.0.0.1',
    port: 0,
    socket: {
      async open(client) {
        connections++;
        client.data = { pending: [] };
        open.add(client);
        try {
          const server = await Bun.connect({
            hostname: target.hostname,
            port: Number(target.port),
            socket: {
              data: (_, chunk) => void client.write(chunk),
              close: () => void client.end(),
              error: () => void client.end(),
            },
          });
          client.data.upstream = server;
          for (const chunk of client.data.pending.splice(0)) server.write(chunk);
        } catch {
          client.end();
        }
      },
      data(client, chunk) {
        if (client.data.upstream) client.data.upstream.write(chunk);
        else client.data.pending.push(new Uint8Array(chunk));
      },
      close(client) {
        open.delete(client);
        client.data.upstream?.end();
      },
      error(client) {
        client.data.upstream?.end();
      },
    },
  });
  return {
    url: `http://127.0.0.1:${listener.port}`,
    get connections() {
      return connections;
    },
    cut() {
      for (const client of open) {
        client.data.upstream?.terminate();
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
