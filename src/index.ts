import pkg from '../package.json';
import { createApp } from './app';
import { type Config, ConfigError, loadConfig } from './config';

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
  const command = loadConfig(process.argv.slice(2), process.env);
  if (command.kind === 'help') return console.log(command.text);
  if (command.kind === 'version') return console.log(pkg.version);
  const { config } = command;
  const tls = await readTls(config);

  const app = createApp(config);
  try {
    // reusePort off: a second server on a taken port must fail, not share it silently.
    // development off: the client page is served bundled and minified, without the dev server.
    app.listen({ port: config.port, hostname: config.host, tls, reusePort: false, development: false });
  } catch (e) {
    throw new ConfigError(`cannot listen on ${config.host}:${config.port}: ${(e as Error).message}`);
  }
  const server = app.server;
  if (!server) throw new Error('the server did not start');
  const url = `${tls ? 'https' : 'http'}://${config.host.includes(':') ? `[${config.host}]` : config.host}:${server.port}`;
  console.log(`switchboard ${pkg.version} listening on ${url} (TLS ${tls ? 'on' : 'off'})`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`switchboard: ${signal}, closing streams and stopping`);
    // Ending the streams first lets EventSource clients reconnect elsewhere at once, and lets the
    // server's stop complete: it waits for open responses.
    app.decorator.signalling.shutdown();
    await app.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((e: unknown) => {
  console.error(`switchboard: ${e instanceof ConfigError ? e.message : String((e as Error)?.stack ?? e)}`);
  process.exit(1);
});
