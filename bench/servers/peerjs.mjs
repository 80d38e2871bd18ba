// PeerJS server (npm `peer`) as its README starts it, under Node, its own runtime, on 127.0.0.1 and a
// free port. Prints "listening <port>"; "gc" on stdin → "rss <bytes> heap <bytes>" (run with --expose-gc).
import { createInterface } from 'node:readline';
import { PeerServer } from 'peer';

PeerServer({ port: 0, host: '127.0.0.1', concurrent_limit: 1_000_000, alive_timeout: 600_000 }, (server) => {
  console.log(`listening ${server.address().port}`);
});
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'gc') return;
  if (globalThis.gc) globalThis.gc();
  else globalThis.Bun?.gc(true);
  const m = process.memoryUsage();
  console.log(`rss ${m.rss} heap ${m.heapUsed}`);
});
