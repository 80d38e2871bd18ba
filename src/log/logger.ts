import type { Clock } from '../clock';
import type { Config } from '../config';

export type LogLevel = Config['logLevel'];
export type LogFormat = Config['logFormat'];
export type LogFields = Record<string, unknown>;

/**
 * Structured logging: one line per event. Fields name things (`requestId`, `sessionId`, `peerId`);
 * the message says what happened. Check `enabled()` before building fields on a hot path.
 */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** Whether a line at `level` would be written. */
  enabled(level: LogLevel): boolean;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/**
 * Keys whose values never reach a log line, whoever passes them: credentials of any kind, and what
 * peers send each other (SDP, candidates), which is theirs and can be large.
 */
const SECRET_KEY = /authorization|cookie|token|secret|password|credential/i;
const CONTENT_KEYS: ReadonlySet<string> = new Set(['payload', 'sdp', 'body', 'candidate']);
export const REDACTED = '[redacted]';

function redact(key: string, value: unknown): unknown {
  if (key !== '' && (SECRET_KEY.test(key) || CONTENT_KEYS.has(key))) return REDACTED;
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  return value;
}

export interface LoggerOptions {
  level: LogLevel;
  format: LogFormat;
  clock: Pick<Clock, 'now'>;
  /** Receives each finished line, without its line break. */
  write: (line: string) => void;
}

/** A logger writing JSON lines (or, for a terminal, `time LEVEL message key=value …`). */
export function createLogger(options: LoggerOptions, bound: LogFields = {}): Logger {
  const threshold = RANK[options.level];
  const format = options.format === 'pretty' ? prettyLine : jsonLine;
  const log = (level: LogLevel) => (msg: string, fields?: LogFields) => {
    if (RANK[level] < threshold) return;
    options.write(format(new Date(options.clock.now()).toISOString(), level, msg, fields ? { ...bound, ...fields } : bound));
  };
  return {
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    enabled: (level) => RANK[level] >= threshold,
    child: (fields) => createLogger(options, { ...bound, ...fields }),
  };
}

function jsonLine(time: string, level: LogLevel, msg: string, fields: LogFields): string {
  return JSON.stringify({ time, level, msg, ...fields }, redact);
}

function prettyLine(time: string, level: LogLevel, msg: string, fields: LogFields): string {
  let line = `${time} ${level.toUpperCase().padEnd(5)} ${msg}`;
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const shown = redact(key, value);
    const text = typeof shown === 'string' ? shown : JSON.stringify(shown, redact);
    line += ` ${key}=${/^[^\s"=]+$/.test(text) ? text : JSON.stringify(text)}`;
  }
  return line;
}

/** Writes nothing: the default for an app built without a logger, as in most tests. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  enabled: () => false,
  child: () => silentLogger,
};
