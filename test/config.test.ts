import { describe, expect, test } from 'bun:test';
import { Config, ConfigError, defaultConfig, loadConfig, SECRET_SETTINGS, shownSetting } from '../src/config';

const run = (argv: string[], env: Record<string, string> = {}) => {
  const command = loadConfig(argv, env);
  if (command.kind !== 'run') throw new Error(`expected a run command, got ${command.kind}`);
  return command.config;
};
const failure = (argv: string[], env: Record<string, string> = {}) => {
  try {
    loadConfig(argv, env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
};

describe('loadConfig', () => {
  test('defaults with nothing set', () => {
    const config = run([]);
    expect(config).toEqual(defaultConfig());
    expect(config).toMatchObject({ port: 3478, host: '0.0.0.0', pingIntervalMs: 10_000, peerTimeoutMs: 15_000, maxQueue: 256, turnTtlS: 86_400, corsOrigins: ['*'] });
  });

  test('reads and converts environment variables', () => {
    const config = run([], { PORT: '8443', PING_INTERVAL_MS: '500', ICE_URLS: 'stun:a:3478, turn:b:3478?transport=udp', CORS_ORIGINS: 'https://a.example,https://b.example' });
    expect(config.port).toBe(8443);
    expect(config.pingIntervalMs).toBe(500);
    expect(config.iceUrls).toEqual(['stun:a:3478', 'turn:b:3478?transport=udp']);
    expect(config.corsOrigins).toEqual(['https://a.example', 'https://b.example']);
  });

  test('a flag wins over the environment, in both flag forms', () => {
    expect(run(['--port', '9000'], { PORT: '8000' }).port).toBe(9000);
    expect(run(['--max-peers-per-session=8']).maxPeersPerSession).toBe(8);
  });

  test('an empty variable counts as unset', () => {
    expect(run([], { PORT: '' }).port).toBe(3478);
  });

  test('PORT=abc names PORT and its value', () => {
    expect(failure([], { PORT: 'abc' })).toMatch(/^PORT="abc" is invalid/);
    expect(failure(['--port', '70000'])).toMatch(/^PORT="70000" is invalid/);
  });

  test('every numeric setting is validated by name', () => {
    expect(failure([], { MAX_QUEUE: '0' })).toMatch(/^MAX_QUEUE/);
    expect(failure([], { PEER_TIMEOUT_MS: '1.5' })).toMatch(/^PEER_TIMEOUT_MS/);
    expect(failure([], { ICE_URLS: 'http://not-ice' })).toMatch(/^ICE_URLS/);
  });

  test('settings that only make sense together', () => {
    expect(failure([], { TLS_CERT: '/tmp/cert.pem' })).toMatch(/TLS_CERT and TLS_KEY/);
    expect(failure([], { TLS_KEY: '/tmp/key.pem' })).toMatch(/TLS_CERT and TLS_KEY/);
    expect(failure([], { TURN_USERNAME: 'u' })).toMatch(/TURN_USERNAME and TURN_CREDENTIAL/);
    expect(failure([], { TURN_SECRET: 's' })).toMatch(/ICE_URLS/);
    expect(failure([], { TURN_SECRET: 's', ICE_URLS: 'turn:t:3478', TURN_USERNAME: 'u', TURN_CREDENTIAL: 'c' })).toMatch(/TURN_SECRET/);
  });

  test('logging, metrics and shutdown settings', () => {
    expect(run([])).toMatchObject({ logLevel: 'info', logFormat: 'json', shutdownTimeoutMs: 5000 });
    expect(run([]).metricsToken).toBeUndefined();
    const config = run(['--log-format', 'pretty'], { LOG_LEVEL: 'debug', METRICS_TOKEN: 'abc', SHUTDOWN_TIMEOUT_MS: '0' });
    expect(config).toMatchObject({ logLevel: 'debug', logFormat: 'pretty', metricsToken: 'abc', shutdownTimeoutMs: 0 });
    expect(failure([], { LOG_LEVEL: 'verbose' })).toBe('LOG_LEVEL="verbose" is invalid: Expected one of debug, info, warn, error');
    expect(failure([], { SHUTDOWN_TIMEOUT_MS: '-1' })).toMatch(/^SHUTDOWN_TIMEOUT_MS/);
  });

  test('an unknown flag is refused', () => {
    expect(failure(['--prot', '1'])).toMatch(/--prot/);
  });

  test('--help lists every setting with its variable and default', () => {
    const command = loadConfig(['--help'], {});
    if (command.kind !== 'help') throw new Error('expected help');
    for (const key of Object.keys(Config.properties)) {
      const env = key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
      expect(command.text).toContain(env);
    }
    expect(command.text).toContain('--ping-interval-ms, PING_INTERVAL_MS');
    expect(command.text).toContain('(default: 3478)');
  });

  test('the README lists every setting', async () => {
    const readme = await Bun.file(new URL('../README.md', import.meta.url)).text();
    for (const key of Object.keys(Config.properties)) {
      const env = key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
      const flag = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
      expect(readme).toContain(`| \`${env}\` | \`--${flag}\` |`);
    }
  });

  test('--version', () => {
    expect(loadConfig(['--version'], {}).kind).toBe('version');
  });
});

describe('errors never show a credential', () => {
  test('a credential too short is named, its value is not', () => {
    const cases: [Record<string, string>, string, string][] = [
      [{ ADMIN_TOKEN: 'hunter2-admin' }, 'ADMIN_TOKEN', 'hunter2-admin'],
      [{ AUTH_MODE: 'jwt', JWT_SECRET: 'hunter2-jwt-secret' }, 'JWT_SECRET', 'hunter2-jwt-secret'],
      [{ NOTIFY_URL: 'https://hooks.example/x', NOTIFY_SECRET: 'hunter2-ntf' }, 'NOTIFY_SECRET', 'hunter2-ntf'],
    ];
    for (const [env, name, secret] of cases) {
      const message = failure([], env);
      expect(message).toStartWith(`${name}=[redacted] is invalid: `);
      expect(message).not.toContain(secret);
    }
    expect(failure(['--admin-token', 'hunter2-flag'])).not.toContain('hunter2');
  });

  test('REDIS_URL is shown without its password, its user and host kept', () => {
    const message = failure([], { REDIS_URL: 'redis://app:hunter2@pass@redis.internal:6379/0 trailing' });
    expect(message).toStartWith('REDIS_URL="redis://app:[redacted]@redis.internal:6379/0 trailing" is invalid: ');
    expect(message).not.toContain('hunter2');
    expect(failure([], { REDIS_URL: 'redis://hunter2@redis.internal x' })).toStartWith('REDIS_URL="redis://[redacted]@redis.internal x" is invalid');
    expect(failure([], { REDIS_URL: 'http://redis.internal:6379' })).toStartWith('REDIS_URL="http://redis.internal:6379" is invalid');
  });

  test('every setting named like a credential is marked secret, and shown as [redacted]', () => {
    const named = Object.keys(Config.properties).filter((key) => /token|secret|credential|password/i.test(key));
    expect(named.length).toBeGreaterThan(5);
    for (const key of named) {
      expect(SECRET_SETTINGS.has(key as keyof Config)).toBe(true);
      expect(shownSetting(key as keyof Config, 'hunter2')).toBe('[redacted]');
    }
    expect(SECRET_SETTINGS.has('redisUrl')).toBe(true);
    expect(shownSetting('port', 'abc')).toBe('"abc"');
  });
});
