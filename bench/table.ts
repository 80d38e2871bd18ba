// One figure of `bun run bench`, and the table they make. Every benchmark module returns rows; the
// harness (bench/index.ts) prints them as one markdown table and writes them into BENCHMARKS.md.

export interface Goal {
  /** The figure meets the goal when it is at least (`>=`) or at most (`<=`) `value`. */
  op: '>=' | '<=';
  value: number;
}

export interface Row {
  /** The workload, e.g. "SSE relay (100 pairs, 250 B / 4 KB)". */
  bench: string;
  /** What ran it, e.g. "switchboard SSE", "PeerJS server", "bare Bun.serve hello-world". */
  subject: string;
  /** What was measured, e.g. "messages/s", "p99", "RSS per stream". */
  figure: string;
  value: number;
  /** Unit of `value` as printed: "msg/s", "ms", "KiB", "%", "×", "MB", "ms". */
  unit: string;
  goal?: Goal;
  /** A short remark printed after the value: the load generator's CPU, a run count. */
  note?: string;
}

export const met = (row: Row): boolean | undefined =>
  row.goal === undefined || !Number.isFinite(row.value) ? undefined : row.goal.op === '>=' ? row.value >= row.goal.value : row.value <= row.goal.value;

function number(value: number): string {
  if (!Number.isFinite(value)) return '—';
  const abs = Math.abs(value);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** The rows as one markdown table, in the order given; a benchmark's name is written on its first row. */
export function formatRows(rows: readonly Row[]): string {
  const lines = ['| benchmark | subject | figure | value | goal | |', '|---|---|---|---:|---|---|'];
  let bench: string | undefined;
  for (const row of rows) {
    const verdict = met(row);
    const goal = row.goal ? `${row.goal.op === '>=' ? '≥' : '≤'} ${number(row.goal.value)} ${row.unit}` : '';
    const value = `${number(row.value)} ${row.unit}${row.note ? ` (${row.note})` : ''}`;
    lines.push(
      `| ${row.bench === bench ? '' : row.bench} | ${row.subject} | ${row.figure} | ${value} | ${goal} | ${verdict === undefined ? '' : verdict ? 'met' : '**not met**'} |`,
    );
    bench = row.bench;
  }
  return lines.join('\n');
}
