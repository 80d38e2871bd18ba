import { type Static, Type as T, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { REDACTED } from './log/logger';

const IceUrl = T.String({ pattern: '^(stun|stuns|turn|turns):[^\\s,]+$' });

/** Who may register, read and send: see SECURITY.md. */
const AccessSettings = {
  authMode: T.Union([T.Literal('open'), T.Literal('token'), T.Literal('jwt')], {
    default: 'open',
    description: 'open: no checks (register still returns a token); token: a peer token guards each peer; jwt: registering needs a JWT from your backend',
  }),
  jwtSecret: T.Optional(T.String({ minLength: 32, description: 'HS256 secret that JWTs are signed with (AUTH_MODE=jwt), at least 32 characters' })),
  jwtPublicKeyFile: T.Optional(T.String({ minLength: 1, description: 'PEM public key (RSA: RS256, P-256: ES256) that JWTs are signed with (AUTH_MODE=jwt)' })),
  jwtJwksFile: T.Optional(T.String({ minLength: 1, description: 'JSON Web Key Set file with the RS256/ES256 keys that JWTs are signed with (AUTH_MODE=jwt)' })),
  jwtIssuer: T.Optional(T.String({ minLength: 1, description: 'when set, a JWT must carry this iss claim' })),
  jwtAudience: T.Optional(T.String({ minLength: 1, description: 'when set, a JWT must carry this aud claim' })),
  adminToken: T.Optional(T.String({ minLength: 16, description: 'bearer token of the admin API (/sessions); without it that API answers 403' })),
  notifyUrl: T.Optional(T.String({ pattern: '^https?://\\S+$', description: 'URL that session and peer events are POSTed to, signed with NOTIFY_SECRET' })),
  notifySecret: T.Optional(T.String({ minLength: 16, description: 'HMAC-SHA256 key of the X-Switchboard-Signature header on notifications' })),
  notifyQueue: T.Integer({ minimum: 1, maximum: 1_000_000, default: 10_000, description: 'notifications waiting for NOTIFY_URL at most; past that the oldest are dropped' }),
};

/** Per-client limits; 0 turns a rate limit off. */
const LimitSettings = {
  registerRatePerMin: T.Integer({ minimum: 0, default: 120, description: 'POST /register per client IP per minute (token bucket; 0: no limit)' }),
  registerBurst: T.Integer({ minimum: 1, default: 30, description: 'POST /register a client IP may make at once before REGISTER_RATE_PER_MIN applies' }),
  messageRatePerS: T.Integer({ minimum: 0, default: 200, description: 'POST /message per client IP per second (0: no limit)' }),
  messageBurst: T.Integer({ minimum: 1, default: 1000, description: 'POST /message a client IP may make at once' }),
  peerMessageRatePerS: T.Integer({ minimum: 0, default: 50, description: 'messages one peer may send per second (0: no limit)' }),
  peerMessageBurst: T.Integer({ minimum: 1, default: 500, description: 'messages one peer may send at once' }),
  iceServersRatePerMin: T.Integer({ minimum: 0, default: 120, description: 'GET /iceServers per client IP per minute (token bucket; 0: no limit)' }),
  iceServersBurst: T.Integer({ minimum: 1, default: 30, description: 'GET /iceServers a client IP may make at once before ICE_SERVERS_RATE_PER_MIN applies' }),
  maxSessionsPerIp: T.Integer({
    minimum: 0,
    default: 200,
    description: 'sessions alive at once that POST /register from one client IP created (with REDIS_URL: in the whole cluster; 0: no limit)',
  }),
  maxPeersPerIp: T.Integer({ minimum: 0, default: 200, description: 'registrations alive at once that one client IP made (with REDIS_URL: in the whole cluster; 0: no limit)' }),
  maxStreamsPerIp: T.Integer({ minimum: 0, default: 200, description: 'event streams open at once from one client IP (0: no limit)' }),
  trustProxy: T.Integer({ minimum: 0, maximum: 16, default: 0, description: 'reverse proxies in front whose X-Forwarded-For is believed (0: use the socket address)' }),
};

/** Several instances as one: sessions, routing and resume kept in Redis. */
const ClusterSettings = {
  redisUrl: T.Optional(
    T.String({
      pattern: '^(redis|rediss|valkey|valkeys)://\\S+$',
      description: 'redis://[user:password@]host:port[/db]: keep sessions in this Redis so that several instances behind a load balancer act as one (unset: in this process only)',
    }),
  ),
  redisPrefix: T.String({
    pattern: '^[A-Za-z0-9._:-]{1,64}$',
    default: 'switchboard',
    description: 'prefix of every Redis key and channel, so that several deployments can share one Redis',
  }),
  redisTimeoutMs: T.Integer({
    minimum: 50,
    default: 5000,
    description: 'a Redis command unanswered for this long means Redis is unreachable: the connection is dropped and made again, requests waiting on it answer 503',
  }),
};

/** The media side of relay sessions: the server's own WebRTC connections (see README, Relay mode). */
const RelaySettings = {
  relayPortRange: T.Optional(
    T.String({ pattern: '^\\s*\\d{1,5}\\s*-\\s*\\d{1,5}\\s*$', description: 'UDP ports of relay connections, FROM-TO, one port per connected peer (default: any free port)' }),
  ),
  relayPublicIp: T.Optional(
    T.String({ pattern: '^(\\d{1,3}\\.){3}\\d{1,3}$', description: "IPv4 address announced in the relay's ICE candidates instead of the local one (a server behind 1:1 NAT)" }),
  ),
  relayHostIps: T.Optional(
    T.Array(T.String({ pattern: '^(\\d{1,3}\\.){3}\\d{1,3}$' }), {
      minItems: 1,
      description: 'comma-separated local IPv4 addresses to gather on besides every interface (e.g. 127.0.0.1, which is left out otherwise)',
    }),
  ),
  relayIceUrls: T.Optional(T.Array(IceUrl, { minItems: 1, description: 'comma-separated STUN/TURN URLs the relay itself uses to gather candidates (default: none)' })),
  relayIceUsername: T.Optional(T.String({ minLength: 1, description: 'TURN username for RELAY_ICE_URLS (with RELAY_ICE_CREDENTIAL)' })),
  relayIceCredential: T.Optional(T.String({ minLength: 1, description: 'TURN password for RELAY_ICE_URLS' })),
  relayMode: T.Optional(
    T.Union([T.Literal('open'), T.Literal('admin'), T.Literal('off')], {
      description:
        'who may create relay sessions: open, anyone (?mode=relay); admin, only the admin API and JWTs with "relay": true; off, nobody (default: open with AUTH_MODE=open, admin otherwise)',
    }),
  ),
  maxRelayPeers: T.Integer({
    minimum: 1,
    default: 200,
    description:
      'peers registered in relay sessions on this server at once; past it POST /register answers 503 relay_full (one core carries about 150-300 viewers of a 1.5 Mbit/s camera)',
  }),
  /**
   * Relay peers this instance takes in the relay sessions it owns, in a cluster (REDIS_URL): placement
   * puts a new relay session on the instance with the most room left.
   * @default 0 (the process's own limit: MAX_RELAY_PEERS, capped by RELAY_PORT_RANGE)
   */
  relayCapacity: T.Integer({
    minimum: 0,
    default: 0,
    description:
      'in a cluster, peers of relay sessions this instance carries; a new relay session goes to the instance with the most room, and none left anywhere answers 503 relay_full (0: MAX_RELAY_PEERS)',
  }),
  /**
   * Lifetime of an instance's hold on a relay session's media in a cluster, renewed four times per
   * lifetime: an instance killed loses its sessions to others this long after its last renewal.
   * @default 2000
   */
  relayLeaseMs: T.Integer({
    minimum: 200,
    maximum: 60_000,
    default: 2000,
    description: "in a cluster, milliseconds an instance's hold on a relay session lasts unrenewed: its sessions move to another instance this long after it dies",
  }),
  maxRelayPeersPerIp: T.Integer({ minimum: 0, default: 20, description: 'peers registered in relay sessions from one client IP at once; past it 429 (0: no limit)' }),
  relayIceRestartsPerMin: T.Integer({
    minimum: 0,
    default: 6,
    description: 'ice-restart and offer messages to switchboard one peer may send per minute, after a burst of 3; past it 429 (0: no limit)',
  }),
  relayVideoCodecs: T.Array(T.Union([T.Literal('vp8'), T.Literal('h264')]), {
    minItems: 1,
    default: ['vp8', 'h264'],
    description: 'comma-separated video codecs of relay sessions, preferred first: a publisher sends the first one it has (h264,vp8 for H.264 from browsers too)',
  }),
  relayKeyframeCacheBytes: T.Integer({
    minimum: 0,
    default: 2_500_000,
    description:
      "bytes of video each relay publisher's track keeps since its last keyframe, sent at once to a viewer that joins so that it need not wait for the next keyframe (2.5 MB: a 10 s keyframe interval at 2 Mbit/s; a longer group is not kept; 0: off)",
  }),
  /**
   * The process-wide bound on the keyframe caches: without it MAX_RELAY_PEERS publishers could make the
   * server hold MAX_RELAY_PEERS × RELAY_KEYFRAME_CACHE_BYTES.
   * @default 268435456
   */
  relayKeyframeCacheTotalBytes: T.Integer({
    minimum: 0,
    default: 268_435_456,
    description:
      "bytes of video all relay publishers' keyframe caches hold together (256 MiB): over it the largest cached group is dropped, and that track's joining viewers wait for its next keyframe",
  }),
  relayKeyframeCacheMs: T.Integer({
    minimum: 100,
    default: 12_000,
    description: 'the oldest keyframe the relay keeps for joining viewers, in milliseconds: past it a viewer waits for the next one',
  }),
  relayPrewarm: T.Union([T.Literal('on'), T.Literal('off')], {
    default: 'off',
    description:
      "on: the relay engine (werift) and the DTLS certificate its connections share are loaded right after the server listens, so that the first relay session's offer is not later than the next ones' (about 100 ms), for about 14 MB more idle memory; off: loaded when the first relay session starts. Never loaded with RELAY_MODE=off",
  }),
};

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
  maxPeerEventBytes: T.Integer({
    minimum: 131_072,
    default: 1_048_576,
    description: "bytes of one peer's events, undelivered and kept for resume; past it the oldest kept ones go, then client messages to the peer are refused (429 queue_full)",
  }),
  maxEventBytes: T.Integer({
    minimum: 131_072,
    default: 268_435_456,
    description: "bytes of every peer's events together (with REDIS_URL: the cluster's, in Redis); past it kept events go first, then client messages are refused (429 queue_full)",
  }),
  maxSessions: T.Integer({ minimum: 1, default: 10_000, description: 'sessions on this server at once' }),
  maxPeersPerSession: T.Integer({ minimum: 2, default: 64, description: 'peers in one session at once' }),
  logLevel: T.Union([T.Literal('debug'), T.Literal('info'), T.Literal('warn'), T.Literal('error')], {
    default: 'info',
    description: 'least severe log lines written: debug, info, warn or error',
  }),
  logFormat: T.Union([T.Literal('json'), T.Literal('pretty')], { default: 'json', description: 'json (one object per line) or pretty (for a terminal)' }),
  metricsToken: T.Optional(T.String({ minLength: 1, description: 'when set, GET /metrics requires "Authorization: Bearer <token>"' })),
  shutdownTimeoutMs: T.Integer({ minimum: 0, default: 5_000, description: 'on SIGTERM/SIGINT, how long in-flight requests get before the rest is closed' }),
  iceUrls: T.Optional(T.Array(IceUrl, { minItems: 1, description: 'comma-separated STUN/TURN URLs for GET /iceServers (default: stun:stun.cloudflare.com:3478)' })),
  turnSecret: T.Optional(T.String({ minLength: 1, description: "coturn's static-auth-secret: GET /iceServers issues time-limited TURN credentials" })),
  turnTtlS: T.Integer({ minimum: 60, default: 86_400, description: 'lifetime of TURN credentials issued with TURN_SECRET or asked of Cloudflare, in seconds' }),
  turnUsername: T.Optional(T.String({ minLength: 1, description: 'fixed TURN username (with TURN_CREDENTIAL)' })),
  turnCredential: T.Optional(T.String({ minLength: 1, description: 'fixed TURN password (with TURN_USERNAME)' })),
  cloudflareTurnKeyId: T.Optional(
    T.String({ minLength: 1, description: "Cloudflare Realtime TURN key id: GET /iceServers serves Cloudflare's TURN credentials (with CLOUDFLARE_TURN_API_TOKEN)" }),
  ),
  cloudflareTurnApiToken: T.Optional(T.String({ minLength: 1, description: "that TURN key's API token (a bearer token, kept on the server)" })),
  cloudflareTurnApiUrl: T.String({ pattern: '^https?://[^\\s]+$', default: 'https://rtc.live.cloudflare.com/v1', description: "base URL of Cloudflare's Realtime API" }),
  corsOrigins: T.Array(T.String({ minLength: 1 }), {
    minItems: 1,
    default: ['*'],
    description: 'comma-separated origins allowed to call the API; * allows any, never with credentials',
  }),
  ...AccessSettings,
  ...LimitSettings,
  ...ClusterSettings,
  ...RelaySettings,
});
export type Config = Static<typeof Config>;

type Key = keyof Config & string;
const keys = Object.keys(Config.properties) as Key[];

const envName = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
const flagName = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const isList = (key: Key) => (Config.properties[key] as TSchema).type === 'array';
const isInteger = (key: Key) => (Config.properties[key] as TSchema).type === 'integer';

/**
 * The settings that are credentials: an error about one never prints its value (REDIS_URL is shown
 * without its password). A new credential setting belongs here.
 */
export const SECRET_SETTINGS: ReadonlySet<Key> = new Set<Key>([
  'adminToken',
  'jwtSecret',
  'metricsToken',
  'notifySecret',
  'turnSecret',
  'turnCredential',
  'cloudflareTurnApiToken',
  'relayIceCredential',
  'redisUrl',
]);

/**
 * A setting's value as an error message may show it: quoted, with a credential replaced by `[redacted]`
 * and a URL's password (`redis://user:password@host`) too.
 */
export function shownSetting(key: Key, value: unknown): string {
  const text = JSON.stringify(value);
  if (!SECRET_SETTINGS.has(key)) return text;
  if (key !== 'redisUrl' || typeof value !== 'string') return REDACTED;
  // The user info runs to the last @ before the host: a password may contain @ itself.
  const url = /^([^:/]*:\/\/)(.*)@([^@]*)$/.exec(value);
  if (!url) return text;
  const [, scheme, userInfo = '', host] = url;
  const colon = userInfo.indexOf(':');
  return JSON.stringify(`${scheme}${colon < 0 ? REDACTED : `${userInfo.slice(0, colon)}:${REDACTED}`}@${host}`);
}

/** A setting that cannot be used; the message names it as the operator wrote it. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

export type Command = { kind: 'run'; config: Config } | { kind: 'help'; text: string } | { kind: 'version' };

/**
 * Reads the command line and the environment into a validated `Config`. This is the only place
 * that looks at `process.env`-like input. Throws `ConfigError` naming the setting at fault.
 */
export function loadConfig(argv: readonly string[], env: Record<string, string | undefined>): Command {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' }, version: { type: 'boolean' } };
  for (const key of keys) options[flagName(key)] = { type: 'string' };
  let flags: Record<string, string | boolean | undefined>;
  try {
    // node:util only when there are flags: a server configured by its environment starts without it.
    flags = argv.length === 0 ? {} : (require('node:util') as typeof import('node:util')).parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
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
      throw new ConfigError(`${envName(key)}=${shownSetting(key, value)} is invalid: Expected a whole number`);
    }
    raw[key] = isList(key)
      ? value
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : value.trim();
  }

  // What is set, over the defaults; the whole numbers, checked above, as numbers. One check of the
  // schema, not Value.Parse: its passes (clone, clean, default, convert, assert) call TypeBox's guards
  // often enough at start for the engine's optimizing compiler to run, which idle memory then holds.
  const config: Record<string, unknown> = defaults();
  for (const [key, value] of Object.entries(raw)) config[key] = isInteger(key as Key) ? Number(value) : value;
  if (!Value.Check(Config, config)) {
    const first = Value.Errors(Config, config).First();
    const key = (first?.path.split('/')[1] ?? '') as Key;
    const shown = raw[key] === undefined ? '' : `=${shownSetting(key, raw[key])}`;
    const choices = (Config.properties[key] as TSchema | undefined)?.anyOf as { const?: unknown }[] | undefined;
    const expected = choices?.every((c) => typeof c.const === 'string') ? `Expected one of ${choices.map((c) => c.const).join(', ')}` : undefined;
    throw new ConfigError(`${envName(key)}${shown} is invalid: ${expected ?? first?.message ?? 'not a valid setting'}`);
  }
  checkCombinations(config as Config);
  return { kind: 'run', config: config as Config };
}

/** Every setting that has a default, set to it (a list as a copy of its own). */
function defaults(): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const value = (Config.properties[key] as TSchema).default as unknown;
    if (value !== undefined) out[key] = Array.isArray(value) ? [...value] : value;
  }
  return out;
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
  checkCloudflare(c);
  checkRelay(c);
  if (c.turnSecret && !c.iceUrls?.some((u) => u.startsWith('turn'))) {
    throw new ConfigError('TURN_SECRET is set but ICE_URLS lists no turn: or turns: URL to use it with');
  }
  const jwtKeys = [c.jwtSecret && 'JWT_SECRET', c.jwtPublicKeyFile && 'JWT_PUBLIC_KEY_FILE', c.jwtJwksFile && 'JWT_JWKS_FILE'].filter(Boolean);
  if (c.authMode === 'jwt' && jwtKeys.length !== 1) {
    throw new ConfigError(`AUTH_MODE=jwt needs exactly one of JWT_SECRET, JWT_PUBLIC_KEY_FILE, JWT_JWKS_FILE${jwtKeys.length ? ` (got ${jwtKeys.join(', ')})` : ''}`);
  }
  if (c.authMode !== 'jwt' && jwtKeys.length) {
    throw new ConfigError(`${jwtKeys.join(', ')} is only used with AUTH_MODE=jwt`);
  }
  if (Boolean(c.notifyUrl) !== Boolean(c.notifySecret)) {
    throw new ConfigError('NOTIFY_URL and NOTIFY_SECRET must be set together: notifications are always signed');
  }
}

/** Cloudflare issues credentials for at most 48 hours. */
const CLOUDFLARE_MAX_TTL_S = 172_800;

function checkCloudflare(c: Config): void {
  if (Boolean(c.cloudflareTurnKeyId) !== Boolean(c.cloudflareTurnApiToken)) {
    throw new ConfigError('CLOUDFLARE_TURN_KEY_ID and CLOUDFLARE_TURN_API_TOKEN must be set together');
  }
  if (!c.cloudflareTurnKeyId) return;
  if (c.turnSecret || c.turnUsername) {
    throw new ConfigError('Cloudflare issues the TURN credentials: unset TURN_SECRET, TURN_USERNAME and TURN_CREDENTIAL');
  }
  if (c.turnTtlS > CLOUDFLARE_MAX_TTL_S) {
    throw new ConfigError(`TURN_TTL_S=${c.turnTtlS} is invalid: Cloudflare issues credentials for at most ${CLOUDFLARE_MAX_TTL_S} seconds`);
  }
}

/** The configuration with every default applied: what tests start from. */
export function defaultConfig(overrides: Partial<Config> = {}): Config {
  return { ...(defaults() as Config), ...overrides };
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

/**
 * Who may create relay sessions: RELAY_MODE, or when unset, whoever may register at all with
 * AUTH_MODE=open, and only the admin API and permitted JWTs with token or jwt.
 */
export function relayMode(c: Pick<Config, 'relayMode' | 'authMode'>): NonNullable<Config['relayMode']> {
  return c.relayMode ?? (c.authMode === 'open' ? 'open' : 'admin');
}

/** The relay's port range as [from, to], or undefined for any free port. */
export function relayPorts(c: Pick<Config, 'relayPortRange'>): [number, number] | undefined {
  if (!c.relayPortRange) return undefined;
  const [from, to] = c.relayPortRange.split('-').map((p) => Number(p.trim()));
  return [from ?? 0, to ?? 0];
}

function checkRelay(c: Config): void {
  const ports = relayPorts(c);
  if (ports && !(ports[0] >= 1 && ports[0] < ports[1] && ports[1] <= 65535)) {
    throw new ConfigError(`RELAY_PORT_RANGE=${JSON.stringify(c.relayPortRange)} is invalid: expected FROM-TO with 1 <= FROM < TO <= 65535 (one port per connected peer)`);
  }
  for (const [name, ip] of [['RELAY_PUBLIC_IP', c.relayPublicIp], ...(c.relayHostIps ?? []).map((ip) => ['RELAY_HOST_IPS', ip])] as const) {
    if (ip?.split('.').some((part) => Number(part) > 255)) throw new ConfigError(`${name}=${JSON.stringify(ip)} is not an IPv4 address`);
  }
  if (Boolean(c.relayIceUsername) !== Boolean(c.relayIceCredential)) {
    throw new ConfigError('RELAY_ICE_USERNAME and RELAY_ICE_CREDENTIAL must be set together');
  }
  if (c.relayIceUsername && !c.relayIceUrls?.some((u) => u.startsWith('turn'))) {
    throw new ConfigError('RELAY_ICE_USERNAME is set but RELAY_ICE_URLS lists no turn: or turns: URL to use it with');
  }
}
