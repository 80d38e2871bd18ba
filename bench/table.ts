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

/** A table's rows grouped by benchmark: a group starts at a row that names its benchmark. */
function groups(table: string): { name: string; lines: string[] }[] {
  const out: { name: string; lines: string[] }[] = [];
  for (const line of table.split('\n').slice(2)) {
    if (!line.startsWith('|')) continue;
    const name = line.split('|')[1]?.trim() ?? '';
    if (name || !out.length) out.push({ name, lines: [line] });
    else out[out.length - 1]?.lines.push(line);
  }
  return out;
}

/**
 * `table` with the benchmarks of `fresh` put in: each replaces the rows of the same benchmark where they
 * were, and a benchmark new to `table` goes at its end. What a run of some benchmarks (`--only`) writes.
 */
export function mergeTables(table: string, fresh: string): string {
  const replacing = groups(fresh);
  const kept = groups(table).map((group) => replacing.find((r) => r.name === group.name) ?? group);
  const added = replacing.filter((r) => !kept.includes(r));
  const header = fresh.split('\n').slice(0, 2);
  return [...header, ...[...kept, ...added].flatMap((group) => group.lines)].join('\n');
}
