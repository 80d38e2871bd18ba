import { expect } from 'bun:test';
import parse, { type ParsedFamily, type ParsedSample } from 'parse-prometheus-text-format';

/** One sample line of the text format: a name, optional labels, a value. */
const SAMPLE_LINE =
  /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*")*\})? (?:[-+]?(?:\d+(?:\.\d+)?(?:e[-+]?\d+)?|Inf)|NaN)$/;

export interface Scrape {
  families: ParsedFamily[];
  family(name: string): ParsedFamily;
  /** The value of the one sample of `name` whose labels include `labels`. */
  value(name: string, labels?: Record<string, string>): number;
  /** The histogram sample of `name` (its buckets, sum and count). */
  histogram(name: string, labels?: Record<string, string>): { buckets: Map<number, number>; count: number; sum: number };
}

/**
 * Parses an exposition with a Prometheus text-format parser, after checking what that lenient parser
 * lets through: every line is a comment or a well-formed sample, and every family has HELP and TYPE.
 */
export function parseExposition(text: string): Scrape {
  expect(text.endsWith('\n')).toBe(true);
  const typed = new Set<string>();
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') {
        expect(['counter', 'gauge', 'histogram']).toContain(meta[3] as string);
        expect(typed.has(meta[2] as string)).toBe(false);
        typed.add(meta[2] as string);
      }
      continue;
    }
    if (!SAMPLE_LINE.test(line)) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    const name = line.split(/[{ ]/)[0] as string;
    expect(typed.has(name) || typed.has(name.replace(/_(bucket|sum|count)$/, ''))).toBe(true);
  }
  const families = parse(text);
  const family = (name: string) => {
    const found = families.find((f) => f.name === name);
    if (!found) throw new Error(`no metric ${name}; have ${families.map((f) => f.name).join(', ')}`);
    return found;
  };
  const sample = (name: string, labels: Record<string, string> = {}): ParsedSample => {
    const matches = family(name).metrics.filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
    if (matches.length !== 1) throw new Error(`${matches.length} samples of ${name} match ${JSON.stringify(labels)}`);
    return matches[0] as ParsedSample;
  };
  return {
    families,
    family,
    value: (name, labels) => Number(sample(name, labels).value),
    histogram(name, labels) {
      if (labels && Object.keys(labels).length > 0) return labelledHistogram(text, name, labels);
      const s = sample(name, labels);
      const buckets = new Map(Object.entries(s.buckets ?? {}).map(([le, n]) => [le === '+Inf' ? Infinity : Number(le), Number(n)]));
      return { buckets, count: Number(s.count), sum: Number(s.sum) };
    },
  };
}

/**
 * One series of a histogram with labels, read from the text: the parser above keeps one series per
 * histogram family, without its labels.
 */
function labelledHistogram(text: string, name: string, labels: Record<string, string>) {
  const buckets = new Map<number, number>();
  let count = Number.NaN;
  let sum = Number.NaN;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match?.[1]?.startsWith(name)) continue;
    const own: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) own[key as string] = value as string;
    if (!Object.entries(labels).every(([k, v]) => own[k] === v)) continue;
    const value = Number(match[3]);
    if (match[1] === `${name}_bucket`) buckets.set(own.le === '+Inf' ? Infinity : Number(own.le), value);
    else if (match[1] === `${name}_count`) count = value;
    else if (match[1] === `${name}_sum`) sum = value;
  }
  if (Number.isNaN(count)) throw new Error(`no series of ${name} matches ${JSON.stringify(labels)}`);
  return { buckets, count, sum };
}

/** GETs /metrics from a running server and parses it. */
export async function scrape(url: string, token?: string): Promise<Scrape> {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const res = await fetch(`${url}/metrics`, { headers });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(await res.text());
}
