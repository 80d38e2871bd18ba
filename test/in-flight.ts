import net from 'node:net';

export interface InFlight {
  /** Sends the rest of the body. */
  finish(): void;
  /** Everything the server sent back once it closes the connection (the 100 Continue line included). */
  readonly closed: Promise<string>;
}

/**
 * A request the server is in the middle of: its headers are in and the server has asked for the body
 * (`100 Continue`), which is held back until `finish()`. A server that stops gracefully must answer it.
 */
export async function startInFlight(url: string, path: string, body: string): Promise<InFlight> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  socket.on('error', () => {});
  let received = '';
  let onData: () => void = () => {};
  socket.on('data', (chunk) => {
    received += chunk.toString();
    onData();
  });
  const closed = new Promise<string>((resolve) => socket.on('close', () => resolve(received)));
  const length = Buffer.byteLength(body);
  socket.write(`POST ${path} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Length: ${length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`);
  await new Promise<void>((resolve, reject) => {
    onData = () => (received.includes('100 Continue') ? resolve() : undefined);
    socket.on('close', () => reject(new Error(`closed before 100 Continue: ${JSON.stringify(received)}`)));
  });
  return { finish: () => socket.write(body), closed };
}

/** The status code of the final (non-100) response in `raw`, if any. */
export const finalStatus = (raw: string) => [...raw.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1])).find((s) => s !== 100);
