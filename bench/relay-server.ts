// The server as the relay benchmark runs it: the same app as src/index.ts, with the relay's own
// counters written to stdout twice a second (`relay {json}`), so that the benchmark sees what the server
// forwarded, retransmitted and dropped, apart from what its viewers received.
import { createApp } from '../src/app';
import { loadConfig } from '../src/config';

const command = loadConfig(process.argv.slice(2), process.env);
if (command.kind !== 'run') throw new Error('usage: bun bench/relay-server.ts [settings]');
const server = createApp(command.config);
const { app, relay } = server;
if (!relay) throw new Error('this server runs without a relay (REDIS_URL is set)');
app.listen({ port: command.config.port, hostname: command.config.host, reusePort: false, development: false });
console.log(`relay benchmark server listening on http://${command.config.host}:${app.server?.port}`);
setInterval(() => console.log(`relay ${JSON.stringify(relay.stats())}`), 500);
process.on('SIGTERM', async () => {
  await server.stop();
  process.exit(0);
});
