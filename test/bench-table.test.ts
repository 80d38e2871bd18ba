// The table of `bun run bench`: a run of some benchmarks (`--only`) puts its rows into the table the
// last full run wrote, and leaves every other benchmark's rows as they were.
import { describe, expect, test } from 'bun:test';
import { formatRows, mergeTables, type Row } from '../bench/table';

const row = (bench: string, figure: string, value: number): Row => ({ bench, subject: 'switchboard', figure, value, unit: 'ms' });

describe('mergeTables', () => {
  const last = formatRows([row('A', 'p50', 1), row('A', 'p99', 2), row('B', 'p50', 3), row('C', 'p50', 4)]);

  test('a benchmark run again replaces its own rows where they were, whatever their number', () => {
    const merged = mergeTables(last, formatRows([row('B', 'p50', 30), row('B', 'p95', 31), row('B', 'max', 32)]));
    expect(merged).toBe(formatRows([row('A', 'p50', 1), row('A', 'p99', 2), row('B', 'p50', 30), row('B', 'p95', 31), row('B', 'max', 32), row('C', 'p50', 4)]));
  });

  test('a benchmark the table did not have goes at its end', () => {
    expect(mergeTables(last, formatRows([row('D', 'p50', 5)]))).toBe(
      formatRows([row('A', 'p50', 1), row('A', 'p99', 2), row('B', 'p50', 3), row('C', 'p50', 4), row('D', 'p50', 5)]),
    );
  });
});
