// `bun run bench`: every benchmark in one run, on loopback, bounded in time (about 6 minutes; a
// `--smoke` run takes seconds and only proves the harness works). Prints one table and writes it into
// BENCHMARKS.md, with the machine, the versions and the command.
//
//   bun run bench                      # everything; rewrites the figures section of BENCHMARKS.md
//   bun run bench --smoke              # tiny counts, nothing written
//   bun run bench --only sse-relay,streams --no-write
//
// The servers run pinned to CPU 0 and this process (the load) to CPU 1 when the machine has taskset
// and two CPUs or more, so that the load and the server never share a core.

import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { spawnSync } from 'bun';
import { benchBinary } from './binary';
import { benchClusterRows } from './cluster';
import { benchFirstFrame } from './first-frame';
import { pinLoad } from './process';
import { benchRelayRows } from './relay';
import { benchRelayClusterRows } from './relay-cluster';
import { benchSessionSetup } from './session-setup';
import { benchSseRelay } from './sse-relay';
import { benchStreams } from './streams';
import { formatRows, mergeTables, met, type Row } from './table';
import { benchTls } from './tls';

type Bench = (options: { smoke: boolean; log: (line: string) => void }) => Promise<Row[]>;

/**
 * The relay's server settings (RELAY_KEYFRAME_CACHE_BYTES=… bun run bench, say): every RELAY_* variable
 * of the harness's environment goes to the relay benchmark's server, and its rows name them.
 */
const relayServerEnv = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[0].startsWith('RELAY_') && e[1] !== undefined));

/** In the order they run: the executable first, on a quiet machine; the 20,000 streams last. */
const BENCHES: Record<string, Bench> = {
  binary: benchBinary,
  'sse-relay': benchSseRelay,
  'session-setup': benchSessionSetup,
  cluster: benchClusterRows,
  tls: benchTls,
  relay: (options) => benchRelayRows({ ...options, serverEnv: relayServerEnv }),
  'relay-cluster': benchRelayClusterRows,
  'first-frame': benchFirstFrame,
  streams: benchStreams,
};

const root = join(import.meta.dir, '..');
const START = '<!-- bun run bench: start -->';
const END = '<!-- bun run bench: end -->';

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    smoke: { type: 'boolean', default: false },
    only: { type: 'string' },
    'no-write': { type: 'boolean', default: false },
  },
});
const only = values.only?.split(',').map((name) => name.trim()) ?? Object.keys(BENCHES);
const unknown = only.filter((name) => !(name in BENCHES));
if (unknown.length) {
  console.error(`unknown benchmark ${unknown.join(', ')}; there are ${Object.keys(BENCHES).join(', ')}`);
  process.exit(2);
}

const log = (line: string) => console.error(`[bench] ${line}`);
pinLoad(log);
const started = new Date();
const load = loadavg();
const rows: Row[] = [];
/** The benchmarks that gave rows: one that could not run here (a tool missing) leaves its earlier rows as they were. */
const measured: string[] = [];
for (const name of only) {
  const t0 = performance.now();
  log(`${name}…`);
  const given = await (BENCHES[name] as Bench)({ smoke: values.smoke, log: (line) => log(`${name}: ${line}`) });
  rows.push(...given);
  if (given.length) measured.push(name);
  log(`${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

const table = formatRows(rows);
console.log(table);
const missed = rows.filter((row) => met(row) === false);
const goals = rows.filter((row) => row.goal).length;
console.log(`\n${rows.length} figures; of ${goals} goals, ${goals - missed.length} met, ${missed.length} not met`);
if (!values.smoke && !values['no-write']) {
  if (measured.length) {
    writeFigures(table);
    log('BENCHMARKS.md: figures written');
  } else log('BENCHMARKS.md: no figures to write');
}

function version(command: string[]): string {
  if (!Bun.which(command[0] as string)) return 'absent';
  const out = spawnSync(command, { stdout: 'pipe', stderr: 'ignore' });
  return out.stdout.toString().trim().split('\n')[0] ?? '?';
}

function packageVersion(name: string): string {
  return (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}

/** The machine and the software the figures come from. */
function environment(): string {
  const cpu = cpus();
  const command = `bun run bench${values.only ? ` --only ${values.only}` : ''}`;
  return [
    `Measured ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC with \`${command}\`.`,
    '',
    `- Machine: ${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB` +
      ` (${(freemem() / 2 ** 30).toFixed(0)} GiB free), ${version(['uname', '-sr'])}; load average ${load.map((l) => l.toFixed(2)).join(' ')} at the start.`,
    `- Software: Bun ${Bun.version}, Node ${version(['node', '--version'])} (PeerJS server), elysia ${packageVersion('elysia')},` +
      ` peer ${packageVersion('peer')}, peerjs ${packageVersion('peerjs')} (PeerJS browser client), ${version(['/usr/bin/chromium', '--version'])}.`,
    '- Servers pinned to CPU 0, the load generator (this harness) to CPU 1; everything on loopback.',
  ].join('\n');
}

/**
 * A "Rows of" line of an earlier `--only` run, less the benchmarks this run measures again: those rows
 * are this run's now, the others are still that run's. No line when none of its benchmarks is left.
 */
function withoutRerun(line: string, rerun: readonly string[]): string[] {
  const prefix = '- Rows of ';
  const colon = line.indexOf(': ');
  if (!line.startsWith(prefix) || colon < 0) return [line];
  const named = line.slice(prefix.length, colon).split(', ');
  const left = named.filter((name) => !rerun.includes(name));
  if (left.length === named.length) return [line];
  return left.length === 0 ? [] : [`${prefix}${left.join(', ')}${line.slice(colon)}`];
}

/**
 * Replaces the figures section of BENCHMARKS.md (between its markers), or puts one at its top. A run of
 * some benchmarks (`--only`, or a benchmark that gave no rows) replaces only the rows of those that
 * gave some, and says when they were measured below the environment of the rest.
 */
function writeFigures(table: string): void {
  const path = join(root, 'BENCHMARKS.md');
  const text = readFileSync(path, 'utf8');
  const at = text.indexOf(START);
  const end = text.indexOf(END);
  const previous = at >= 0 && end > at ? text.slice(at + START.length, end).trim() : undefined;
  const tableAt = previous?.indexOf('| benchmark |') ?? -1;
  let section = `${START}\n${environment()}\n\n${table}\n${END}`;
  if ((values.only || measured.length < only.length) && previous !== undefined && tableAt >= 0) {
    const names = measured.map((name) => `\`${name}\``);
    const [measuredAt = '', , , software = ''] = environment().split('\n');
    const note = `- Rows of ${names.join(', ')}: ${measuredAt.replace(/\.$/, '').replace(/^M/, 'm')}; load average ${load.map((l) => l.toFixed(2)).join(' ')} at its start, ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} at its end; ${software.slice(2).replace(/^S/, 's')}`;
    const lines = previous
      .slice(0, tableAt)
      .trim()
      .split('\n')
      .flatMap((line) => withoutRerun(line, names));
    section = `${START}\n${[...lines, note].join('\n')}\n\n${mergeTables(previous.slice(tableAt), table)}\n${END}`;
  }
  const next = at >= 0 && end > at ? text.slice(0, at) + section + text.slice(end + END.length) : text.replace(/^(# .*\n)/, `$1\n## \`bun run bench\`\n\n${section}\n\n`);
  writeFileSync(path, next);
}
