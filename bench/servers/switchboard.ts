// switchboard as the relay benchmark runs it: the real app (createApp), on 127.0.0.1 and a free port.
// Prints "listening <port>"; on a "gc" line from stdin it collects garbage and prints "rss <bytes> heap <bytes>".
import { createApp } from '../../src/app';
import { defaultConfig } from '../../src/config';

// The per-client rate limits off: one load process is every client here, and the relay is what is measured.
const app = createApp(defaultConfig({ maxSessions: 1_000_000, registerRatePerMin: 0, messageRatePerS: 0, peerMessageRatePerS: 0, maxStreamsPerIp: 0 }));
app.listen({ port: 0, hostname: '127.0.0.1', reusePort: false, development: false });
console.log(`listening ${app.server?.port}`);
// Exit on SIGTERM rather than die of it, so that a CPU profile (--cpu-prof) gets written.
process.on('SIGTERM', () => process.exit(0));
for await (const line of console) {
  if (line.trim() !== 'gc') continue;
  Bun.gc(true);
  const m = process.memoryUsage();
  console.log(`rss ${m.rss} heap ${m.heapUsed}`);
}
