import { parseArgs } from 'node:util';
import { type Static, type TSchema, Type as T } from '@sinclair/typebox';
import { AssertError, Value } from '@sinclair/typebox/value';

const IceUrl = T.String({ pattern: '^(stun|stuns|turn|turns):[^\\s,]+$' });

/**
 * Every setting, with its default. Each key is read from the environment variable of the same name in
 * SCREAMING_SNAKE_CASE (`pingIntervalMs` ← `PING_INTERVAL_MS`) and from the flag in kebab-case
 * (`--ping-interval-ms`); a flag wins over the environment.
 */
export const Config = T.Object({
  port: T.Integer({ minimum: 0, maximum: 65535, default: 3478, description: 'TCP port to listen on (0 picks a free one)' }),
  host: T.String({ minLength: 1, default: '0.0.0.0', description: 'address to listen on' }),
  tlsCert: T.Optional(T.String({ minLength: 1, description: 'PEM certificate chain; with TLS_KEY the port serves HTTPS' })),
  tlsKey: T.Optional(T.String({ minLength: 1, description: 'PEM private key for TLS_CERT' })),
  pingIntervalMs: T.Integer({ minimum: 10, default: 10_000, description: 'interval of the ping event on every stream' }),
  peerTimeoutMs: T.Integer({ minimum: 1, default: 15_000, description: 'how long a peer without an open stream stays registered' }),
  maxQueue: T.Integer({ minimum: 1, maximum: 100_000, default: 256, description: 'events held per peer while its stream is closed, and kept for resume' }),
  maxSessions: T.Integer({ minimum: 1, default: 10_000, description: 'sessions on this server at once' }),
  maxPeersPerSession: T.Integer({ minimum: 2, default: 64, description: 'peers in one session at once' }),
  logLevel: T.Union([T.Literal('debug'), T.Literal('info'), T.Literal('warn'), T.Literal('error')], { default: 'info', description: 'least severe log lines written: debug, info, warn or error' }),
  logFormat: T.Union([T.Literal('json'), T.Literal('pretty')], { default: 'json', description: 'json (one object per line) or pretty (for a terminal)' }),
  metricsToken: T.Optional(T.String({ minLength: 1, description: 'when set, GET /metrics requires "Authorization: Bearer <token>"' })),
  shutdownTimeoutMs: T.Integer({ minimum: 0, default: 5_000, description: 'on SIGTERM/SIGINT, how long in-flight requests get before the rest is closed' }),
  iceUrls: T.Optional(T.Array(IceUrl, { minItems: 1, description: 'comma-separated STUN/TURN URLs for GET /iceServers (default: stun:stun.cloudflare.com:3478)' })),
  turnSecret: T.Optional(T.String({ minLength: 1, description: "coturn's static-auth-secret: GET /iceServers issues time-limited TURN credentials" })),
  turnTtlS: T.Integer({ minimum: 60, default: 86_400, description: 'lifetime of TURN credentials issued with TURN_SECRET, in seconds' }),
  turnUsername: T.Optional(T.String({ minLength: 1, description: 'fixed TURN username (with TURN_CREDENTIAL)' })),
  turnCredential: T.Optional(T.String({ minLength: 1, description: 'fixed TURN password (with TURN_USERNAME)' })),
  corsOrigins: T.Array(T.String({ minLength: 1 }), { minItems: 1, default: ['*'], description: 'comma-separated origins allowed to call the API; * allows any, never with credentials' }),
});
export type Config = Static<typeof Config>;

type Key = keyof Config & string;
const keys = Object.keys(Config.properties) as Key[];
const envName = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
const flagName = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const isList = (key: Key) => (Config.properties[key] as TSchema).type === 'array';
const isInteger = (key: Key) => (Config.properties[key] as TSchema).type === 'integer';

/** A setting that cannot be used; the message names it as the operator wrote it. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

export type Command =
  | { kind: 'run'; config: Config }
  | { kind: 'help'; text: string }
  | { kind: 'version' };

/**
 * Reads the command line and the environment into a validated `Config`. This is the only place
 * that looks at `process.env`-like input. Throws `ConfigError` naming the setting at fault.
 */
export function loadConfig(argv: readonly string[], env: Record<string, string | undefined>): Command {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' }, version: { type: 'boolean' } };
  for (const key of keys) options[flagName(key)] = { type: 'string' };
  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new ConfigError(`${(e as Error).message} (see --help)`);
  }
  if (flags.help) return { kind: 'help', text: helpText() };
  if (flags.version) return { kind: 'version' };

  const raw: Record<string, unknown> = {};
  for (const key of keys) {
    const flag = flags[flagName(key)];
    const value = typeof flag === 'string' ? flag : env[envName(key)];
    if (value === undefined || value.trim() === '') continue;
    // TypeBox would truncate "1.5" to an integer; a setting written wrong should fail instead.
    if (isInteger(key) && !/^\d+$/.test(value.trim())) {
      throw new ConfigError(`${envName(key)}=${JSON.stringify(value)} is invalid: Expected a whole number`);
    }
    raw[key] = isList(key) ? value.split(',').map((s) => s.trim()).filter(Boolean) : value.trim();
  }

  let config: Config;
  try {
    config = Value.Parse(Config, raw);
  } catch (e) {
    if (!(e instanceof AssertError)) throw e;
    const first = e.error;
    const key = (first?.path.split('/')[1] ?? '') as Key;
    const shown = raw[key] === undefined ? '' : `=${JSON.stringify(raw[key])}`;
    const choices = (Config.properties[key] as TSchema | undefined)?.anyOf as { const?: unknown }[] | undefined;
    const expected = choices?.every((c) => typeof c.const === 'string') ? `Expected one of ${choices.map((c) => c.const).join(', ')}` : undefined;
    throw new ConfigError(`${envName(key)}${shown} is invalid: ${expected ?? first?.message ?? e.message}`);
  }
  checkCombinations(config);
  return { kind: 'run', config };
}

function checkCombinations(c: Config): void {
  if (Boolean(c.tlsCert) !== Boolean(c.tlsKey)) {
    throw new ConfigError('TLS_CERT and TLS_KEY must be set together (both PEM file paths)');
  }
  if (Boolean(c.turnUsername) !== Boolean(c.turnCredential)) {
    throw new ConfigError('TURN_USERNAME and TURN_CREDENTIAL must be set together');
  }
  if (c.turnSecret && c.turnUsername) {
    throw new ConfigError('TURN_SECRET issues its own credentials: unset TURN_USERNAME and TURN_CREDENTIAL');
  }
  if (c.turnSecret && !c.iceUrls?.some((u) => u.startsWith('turn'))) {
    throw new ConfigError('TURN_SECRET is set but ICE_URLS lists no turn: or turns: URL to use it with');
  }
}

/** The configuration with every default applied: what tests start from. */
export function defaultConfig(overrides: Partial<Config> = {}): Config {
  return { ...Value.Default(Config, {}) as Config, ...overrides };
}

export function helpText(): string {
  const lines = [
    'Usage: switchboard [--flag value ...]',
    '',
    'WebRTC signalling server: the seed HTTP + Server-Sent Events API, one executable.',
    'Every setting is a flag or an environment variable; the flag wins.',
    '',
  ];
  for (const key of keys) {
    const s = Config.properties[key] as TSchema;
    const dflt = s.default === undefined ? '' : ` (default: ${Array.isArray(s.default) ? s.default.join(',') : s.default})`;
    lines.push(`  --${flagName(key)}, ${envName(key)}`, `      ${s.description}${dflt}`);
  }
  lines.push('  --help      this text', '  --version   print the version and exit');
  return lines.join('\n');
}
