/**
 * The Prometheus text exposition format (version 0.0.4), written by hand: a few counters, gauges and
 * one histogram do not need a client library. Values are kept as plain numbers by their owners and
 * turned into text only when scraped.
 */
export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type MetricType = 'counter' | 'gauge' | 'histogram';
export type Labels = Readonly<Record<string, string>>;

/** Anything that can report metrics at scrape time. */
export interface Collector {
  collect(out: Exposition): void;
}

const escapeHelp = (text: string) => text.replaceAll('\\', '\\\\').replaceAll('\n', '\\n');
const escapeLabel = (value: string) => value.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n');

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

function formatLabels(labels: Labels | undefined): string {
  if (!labels) return '';
  let text = '';
  for (const [name, value] of Object.entries(labels)) text += `${text ? ',' : ''}${name}="${escapeLabel(value)}"`;
  return text ? `{${text}}` : '';
}

/** One scrape's text, family by family: a family's HELP and TYPE come once, before its samples. */
export class Exposition {
  private text = '';

  family(name: string, type: MetricType, help: string): this {
    this.text += `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
    return this;
  }

  sample(name: string, value: number, labels?: Labels): this {
    this.text += `${name}${formatLabels(labels)} ${formatValue(value)}\n`;
    return this;
  }

  /** A whole family of one sample, the common case for gauges. */
  single(name: string, type: MetricType, help: string, value: number, labels?: Labels): this {
    return this.family(name, type, help).sample(name, value, labels);
  }

  /** The samples of one histogram series: cumulative buckets, then its sum and count. */
  histogram(name: string, histogram: Histogram, labels?: Labels): this {
    let cumulative = 0;
    histogram.bounds.forEach((bound, i) => {
      cumulative += histogram.counts[i] as number;
      this.sample(`${name}_bucket`, cumulative, { ...labels, le: formatValue(bound / histogram.divisor) });
    });
    this.sample(`${name}_bucket`, histogram.count, { ...labels, le: '+Inf' });
    this.sample(`${name}_sum`, histogram.sum / histogram.divisor, labels);
    return this.sample(`${name}_count`, histogram.count, labels);
  }

  toString(): string {
    return this.text;
  }
}

/**
 * A histogram with fixed buckets: `observe()` finds the bucket and adds, nothing more. Observations
 * are in the unit of `bounds` (milliseconds, say); they are exposed divided by `divisor` (1000 for
 * seconds, the unit Prometheus wants).
 */
export class Histogram {
  /** Per bucket, not cumulative; the last slot counts what is above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly bounds: readonly number[],
    readonly divisor = 1,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

/** The collectors of one server, in the order they were added. */
export class MetricsRegistry {
  private readonly collectors: Collector[] = [];

  add(collector: Collector): this {
    this.collectors.push(collector);
    return this;
  }

  expose(): string {
    const out = new Exposition();
    for (const collector of this.collectors) collector.collect(out);
    return out.toString();
  }
}
