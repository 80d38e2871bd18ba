import { heapSize } from 'bun:jsc';
import { writeSync } from 'node:fs';
import pkg from '../package.json';
import { createApp } from './app';
import { systemClock } from './clock';
import { type Config, ConfigError, loadConfig } from './config';
import { createLogger, type Logger } from './log/logger';

/** How long after the start (and the relay engine's load, with RELAY_PREWARM=on) its memory is given back. */
const TRIM_AFTER_MS = 1000;

/**
 * Gives back what only the start needed, once: the bytecode of the code that ran once (the settings'
 * checks, the routes' schemas, the relay engine's load) and the collector's free pages. Bun.shrink
 * drops every function's compiled code and collects in full; what runs again is compiled again from
 * the bytecode, on its next call. It saves about 1 MB of the anonymous memory an idle executable
 * holds beyond the mapped file, for a pause of about 10 ms (BENCHMARKS.md, *Idle RSS*).
 */
function trimAfterStart(logger: Logger): void {
  const before = heapSize();
  // JavaScriptCore runs it once this callback has returned, when no JavaScript is running.
  Bun.shrink();
  setTimeout(() => logger.debug("the start's memory released", { heapBytesBefore: before, heapBytesAfter: heapSize() }), 0);
}

/** Reads the PEM files named by TLS_CERT and TLS_KEY, failing with the setting's name. */
async function readTls(config: Config): Promise<{ cert: string; key: string } | undefined> {
  if (!config.tlsCert || !config.tlsKey) return undefined;
  const read = async (setting: string, path: string) => {
    try {
      return await Bun.file(path).text();
    } catch (e) {
      throw new ConfigError(`${setting}=${path} cannot be read: ${(e as Error).message}`);
    }
  };
  return { cert: await read('TLS_CERT', config.tlsCert), key: await read('TLS_KEY', config.tlsKey) };
}

async function main(): Promise<void> {
  // `switchboard device …`: the device simulator, loaded only when asked for; the server starts as before.
  if (process.argv[2] === 'device') {
    Bun.unsafe.setJITPolicy(1);
    const { runDeviceCommand } = await import('./device/cli');
    await runDeviceCommand(process.argv.slice(3), (line) => console.log(line));
    return process.exit(0);
  }
  const command = loadConfig(process.argv.slice(2), process.env);
  if (command.kind === 'help') return void writeSync(1, `${command.text}\n`);
  if (command.kind === 'version') return void writeSync(1, `${pkg.version}\n`);
  const { config } = command;
  const tls = await readTls(config);

  // console.log is synchronous in Bun: no line is lost when the process exits right after it.
  const logger = createLogger({ level: config.logLevel, format: config.logFormat, clock: systemClock, write: (line) => console.log(line) });
  const switchboard = createApp(config, { logger });
  const { app } = switchboard;
  // With REDIS_URL: one attempt to connect before listening (it goes on in the background if Redis is
  // away, and /readyz says so meanwhile).
  await switchboard.ready;
  try {
    // reusePort off: a second server on a taken port must fail, not share it silently.
    // development off: the client page is served bundled and minified, without the dev server.
    // With TLS, HTTP/2 too (ALPN h2): one connection carries every event stream of a browser tab, where
    // HTTP/1.1 allows a browser six connections to a server.
    app.listen({ port: config.port, hostname: config.host, tls, http2: Boolean(tls), reusePort: false, development: false });
  } catch (e) {
    throw new ConfigError(`cannot listen on ${config.host}:${config.port}: ${(e as Error).message}`);
  }
  const server = app.server;
  if (!server) throw new Error('the server did not start');
  const url = `${tls ? 'https' : 'http'}://${config.host.includes(':') ? `[${config.host}]` : config.host}:${server.port}`;
  logger.info(`switchboard ${pkg.version} listening on ${url} (TLS ${tls ? 'on' : 'off'})`, { version: pkg.version, url, tls: Boolean(tls) });
  // The start is over: from now on the JIT compiles what runs often, as it normally does (see deploy/build.ts).
  Bun.unsafe.setJITPolicy(1);
  // Relay sessions allowed (never with RELAY_MODE=off): the engine loads now, off the first viewer's path.
  const prewarmed = config.relayPrewarm === 'on' ? switchboard.relay?.prewarm() : undefined;
  void Promise.resolve(prewarmed).then(() => setTimeout(() => trimAfterStart(logger), TRIM_AFTER_MS).unref());

  let stopping = false;
  const stop = async (signal: string) => {
    // A second signal changes nothing: the drain has its own deadline.
    if (stopping) return;
    stopping = true;
    logger.info(`${signal}: stopping`, { signal });
    // Stops listening, ends every stream (clients reconnect elsewhere), waits for the requests in
    // flight up to SHUTDOWN_TIMEOUT_MS, then closes the rest.
    try {
      await switchboard.stop({ graceful: true });
    } catch (error) {
      logger.error('the stop failed', { error });
      process.exit(1);
    }
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

// Before the settings are read there is no logger: a bad setting is told plainly, as by any command.
main().catch((e: unknown) => {
  const plain = e instanceof ConfigError || (e as Error)?.name === 'DeviceError';
  writeSync(2, `switchboard: ${plain ? (e as Error).message : String((e as Error)?.stack ?? e)}\n`);
  process.exit(1);
});
