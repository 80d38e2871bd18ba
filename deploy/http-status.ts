/**
 * The HTTP status of `request` ("METHOD /path", no body) to 127.0.0.1:`port`, over a TCP connection of
 * its own: not fetch, which goes through HTTP_PROXY where the environment sets one, and whose client
 * would warm up in the way of a timed start. Used by the build's recorded starts (deploy/build.ts) and
 * by the executable's benchmark (bench/binary.ts).
 */
export function httpStatus(port: number, request: string, timeoutMs = 5_000): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let head = '';
    const timer = setTimeout(() => reject(new Error(`${request}: no status line within ${timeoutMs} ms`)), timeoutMs);
    const settle = (fn: () => void) => {
      clearTimeout(timer);
      fn();
    };
    Bun.connect({
      hostname: '127.0.0.1',
      port,
      socket: {
        open(socket) {
          socket.write(`${request} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
        },
        data(socket, chunk) {
          head += chunk.toString('latin1');
          const status = /^HTTP\/1\.[01] (\d{3}) /.exec(head);
          if (!status) return;
          settle(() => resolve(Number(status[1])));
          socket.end();
        },
        close() {
          settle(() => reject(new Error(`${request}: closed before a status line`)));
        },
        error(_socket, error) {
          settle(() => reject(error));
        },
        connectError(_socket, error) {
          settle(() => reject(error));
        },
      },
    }).catch((error: unknown) => settle(() => reject(error)));
  });
}
