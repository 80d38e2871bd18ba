// switchboard as the relay benchmark runs it: the real app (createApp), on 127.0.0.1 and a free port.
import { createApp } from '../../src/app';
import { loadConfig } from '../../src/config';
import { LIMITS_OFF } from '../limits-off';
import { serving } from './serving';

// The per-client rate limits off: one load process is every client here, and the relay is what is measured.
// A setting in the environment wins, read as the real server reads it (PING_INTERVAL_MS=200, say).
const command = loadConfig([], {
  MAX_SESSIONS: '1000000',
  ...LIMITS_OFF,
  ...process.env,
});
if (command.kind !== 'run') throw new Error('bench/servers/switchboard.ts takes its settings from the environment only');
const { config } = command;
// With TLS_CERT and TLS_KEY (PEM files), HTTPS with HTTP/2 beside HTTP/1.1 on the one port, as src/index.ts serves it.
const tls = config.tlsCert && config.tlsKey ? { cert: await Bun.file(config.tlsCert).text(), key: await Bun.file(config.tlsKey).text() } : undefined;
const { app } = createApp(config);
app.listen({ port: 0, hostname: '127.0.0.1', tls, http2: Boolean(tls), reusePort: false, development: false });
await serving(app.server?.port);
