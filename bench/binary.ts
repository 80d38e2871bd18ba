// The compiled executable: its size, how fast it answers after being started, and what it holds idle.
//
//   bun bench/binary.ts [--smoke] [--binary <path>]
//
// The executable is built the way users build it, `bun run build` → dist/switchboard, unless a
// dist/switchboard newer than every file of src/, package.json and bun.lock is there already, or
// `--binary` names one. Each start spawns it with PORT=0 HOST=127.0.0.1 and a bare environment, reads
// its "listening on http://127.0.0.1:<port>" log line, and at once asks GET /healthz over a raw TCP
// connection: "cold start" is spawn → first 200. The same is measured, for comparison, of
// `bun src/index.ts` (not compiled) and of the PeerJS server under Node (bench/servers/peerjs.mjs, GET /).
//
// Each executable (switchboard's and the two anchors) is measured as a fresh copy in a temporary
// directory, in the two states its file can be in the page cache, because they differ by about 5 MB of
// resident memory (measured: 27 against 22 MB of Bun's machine code mapped, the same bytes):
// - *as written*, the state a build, a `cp`, `scp` or an image layer's extraction leaves: the kernel
//   holds a file it was written in large folios (64 KiB here, /proc/kpageflags), and maps each one that
//   a start touches whole;
// - *read back from disk* (its cache dropped with `dd iflag=nocache count=0`, which touches no other
//   file, then read by the starts themselves): in 4 KiB pages, as after a reboot or once memory
//   pressure evicted it. The first of those starts is a cold read from disk.
// The goals are judged on the first state, the larger. The p50 of the starts is a warm-cache start;
// the first start of each state is reported on its own with how much of the file was cached before it
// (fincore). The servers run on the CPUs this process may use (inherited; pin this process with taskset
// to pin them).
// Sizes and memory are in MB = 10^6 bytes, as README's "about 110 MB" (111 MB = 106 MiB); the 45 MB
// idle goal is compared in those MB, the stricter reading (45 MiB would be 47.2 MB).
//
// Full mode: at most a build (about 10 s, bounded at 90 s), then 20 starts of each executable as
// written and 5 read back, and 10 of each comparison, the last few of each left idle for 2 s before
// their RSS is read: about two minutes. Smoke mode: no build (the executable rows are skipped if there
// is none), 3 starts and 1 read back, 1 of each comparison, 0.5 s idle.

import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import type { Subprocess } from 'bun';
import { COMPILE_FLAGS } from '../deploy/compile-flags';
import { httpStatus } from '../deploy/http-status';
import { median, quantile } from './stats';
import { formatRows, type Row } from './table';

const root = join(import.meta.dir, '..');
const MB = 1e6;

export interface BinaryOptions {
  smoke: boolean;
  log: (line: string) => void;
  /** An executable to measure instead of dist/switchboard (then nothing is built). */
  binary?: string;
}

/** What one start of a server gave. */
interface Start {
  /** Spawn → its listening line read from stdout, in ms. */
  lineMs: number;
  /** Spawn → the first 200 answer, in ms. */
  okMs: number;
  /** Resident memory right after that answer, in bytes. */
  rssAfterRequest: number;
  /** Resident memory after `idleMs` more without any request, in bytes (only on the runs that wait). */
  rssIdle?: number;
}

interface Subject {
  name: string;
  command: string[];
  /** The path asked for the first 200. */
  path: string;
}

/** The port in a server's listening line: switchboard's "listening on http://host:port", the bench servers' "listening <port>". */
const LISTENING = /listening (?:on https?:\/\/[^\s"]*:)?(\d+)/;
const START_TIMEOUT_MS = 15_000;

/** A bare environment: a setting left in the caller's (LOG_LEVEL=warn, REDIS_URL…) would change what is measured. */
function serverEnv(): Record<string, string> {
  const env: Record<string, string> = { PORT: '0', HOST: '127.0.0.1' };
  for (const name of ['PATH', 'HOME', 'TMPDIR']) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** VmRSS of a process, in bytes. */
function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!kib) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kib[1]) * 1024;
}

async function stopProcess(proc: Subprocess): Promise<void> {
  proc.kill('SIGTERM');
  const exited = await Promise.race([proc.exited.then(() => true), Bun.sleep(5_000).then(() => false)]);
  if (!exited) {
    proc.kill('SIGKILL');
    await proc.exited;
  }
}

/** Starts `subject` once: spawn → listening line → GET until a 200; then, if `idleMs`, waits and reads RSS again. */
async function startOnce(subject: Subject, idleMs: number | undefined): Promise<Start> {
  const t0 = performance.now();
  const proc = Bun.spawn(subject.command, { cwd: root, env: serverEnv(), stdin: 'ignore', stdout: 'pipe', stderr: 'inherit' });
  try {
    // The listening line, timed when its chunk arrives; stdout is drained to the end after it.
    const { port, lineMs } = await new Promise<{ port: number; lineMs: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${subject.name}: no listening line within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      void (async () => {
        const decoder = new TextDecoder();
        let text = '';
        let found = false;
        for await (const chunk of proc.stdout as unknown as AsyncIterable<Uint8Array>) {
          if (found) continue;
          text += decoder.decode(chunk, { stream: true });
          const match = LISTENING.exec(text);
          if (match) {
            found = true;
            clearTimeout(timer);
            resolve({ port: Number(match[1]), lineMs: performance.now() - t0 });
          }
        }
        clearTimeout(timer);
        if (!found) reject(new Error(`${subject.name} exited (code ${await proc.exited}) without a listening line: ${text.slice(0, 500)}`));
      })();
    });
    // The listening line comes right after listen(): the first request normally answers; a server that
    // is not ready yet is asked again every millisecond.
    let okMs: number | undefined;
    while (okMs === undefined) {
      const status = await httpStatus(port, `GET ${subject.path}`).catch(() => 0);
      if (status === 200) okMs = performance.now() - t0;
      else if (performance.now() - t0 > START_TIMEOUT_MS) throw new Error(`${subject.name}: GET ${subject.path} gave no 200 (last status ${status})`);
      else await Bun.sleep(1);
    }
    const rssAfterRequest = rssOf(proc.pid);
    let rssIdle: number | undefined;
    if (idleMs !== undefined) {
      await Bun.sleep(idleMs);
      rssIdle = rssOf(proc.pid);
    }
    return { lineMs, okMs, rssAfterRequest, rssIdle };
  } finally {
    await stopProcess(proc);
  }
}

/** Starts `subject` `runs` times in a row; the last `idleRuns` of them wait `idleMs` before their RSS is read. */
async function startMany(subject: Subject, runs: number, idleRuns: number, idleMs: number): Promise<{ starts: Start[]; cpuMsPerStart: number }> {
  const starts: Start[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < runs; i++) starts.push(await startOnce(subject, i >= runs - idleRuns ? idleMs : undefined));
  const cpu = process.cpuUsage(cpu0);
  return { starts, cpuMsPerStart: (cpu.user + cpu.system) / 1000 / runs };
}

const ms = (value: number) => `${value.toFixed(1)} ms`;

/** The newest file among src/, package.json, bun.lock and the build's script: what the executable is built from. */
function newestSource(): { path: string; mtimeMs: number } {
  let newest = { path: '', mtimeMs: 0 };
  const consider = (path: string) => {
    const stat = statSync(path, { throwIfNoEntry: false });
    if (stat?.isFile() && stat.mtimeMs > newest.mtimeMs) newest = { path, mtimeMs: stat.mtimeMs };
  };
  for (const entry of readdirSync(join(root, 'src'), { recursive: true, encoding: 'utf8' })) consider(join(root, 'src', entry));
  consider(join(root, 'package.json'));
  for (const file of ['build.ts', 'compile-flags.ts']) consider(join(root, 'deploy', file));
  consider(join(root, 'bun.lock'));
  return newest;
}

/**
 * A file of bench/servers compiled as `bun run build` compiles switchboard (deploy/build.ts), into a
 * temporary directory: the same flags and JIT policy for the start, not the bytecode order, which is
 * written down from a start of switchboard's.
 */
async function buildAnchor(file: string, log: (line: string) => void): Promise<{ path: string; remove: () => void } | undefined> {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-anchor-'));
  const path = join(dir, file.replace(/\.ts$/, ''));
  const proc = Bun.spawn([process.execPath, 'build', ...COMPILE_FLAGS, join(import.meta.dir, 'servers', file), '--outfile', path], { cwd: root, stdout: 'ignore', stderr: 'pipe' });
  const [code, err] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  const remove = () => rmSync(dir, { recursive: true, force: true });
  if (code !== 0) {
    log(`binary: the compiled ${file} did not build (${err.trim()}): its rows are left out`);
    remove();
    return undefined;
  }
  return { path, remove };
}

/** `bun run build`, as users build the executable (package.json's script), bounded in time. */
async function build(log: (line: string) => void): Promise<void> {
  log('binary: building the executable with `bun run build`');
  const t0 = performance.now();
  const proc = Bun.spawn([process.execPath, 'run', 'build'], { cwd: root, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' });
  const timer = setTimeout(() => proc.kill('SIGKILL'), 90_000);
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  clearTimeout(timer);
  if (code !== 0) throw new Error(`bun run build failed (exit ${code}):\n${out}${err}`);
  log(`binary: built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** The executable to measure, building it when needed; undefined when smoke mode has none to measure. */
async function findBinary(options: BinaryOptions): Promise<string | undefined> {
  if (options.binary) {
    if (!statSync(options.binary, { throwIfNoEntry: false })?.isFile()) throw new Error(`--binary ${options.binary}: no such file`);
    options.log(`binary: measuring ${options.binary} as given (not built here)`);
    return options.binary;
  }
  const path = join(root, 'dist/switchboard');
  const built = statSync(path, { throwIfNoEntry: false });
  const newest = newestSource();
  const source = relative(root, newest.path);
  if (built && built.mtimeMs > newest.mtimeMs) {
    options.log(`binary: dist/switchboard (${new Date(built.mtimeMs).toISOString()}) is newer than every source file (newest ${source}): not rebuilding`);
    return path;
  }
  if (options.smoke) {
    if (!built) {
      options.log('binary: no dist/switchboard and smoke mode does not build (`bun run build` makes it): the executable rows are skipped');
      return undefined;
    }
    options.log(`binary: dist/switchboard is older than ${source}, and smoke mode does not rebuild: measuring the older build`);
    return path;
  }
  options.log(built ? `binary: dist/switchboard is older than ${source}` : 'binary: no dist/switchboard yet');
  await build(options.log);
  return path;
}

/** How much of `path` is in the page cache, as a fraction, when util-linux's fincore is there. */
function cachedShare(path: string): number | undefined {
  if (!Bun.which('fincore')) return undefined;
  const out = Bun.spawnSync(['fincore', '--bytes', '--noheadings', '--raw', '--output', 'RES,SIZE', path], { stdout: 'pipe', stderr: 'ignore' });
  const [res, size] = out.stdout.toString().trim().split(/\s+/).map(Number);
  return out.exitCode === 0 && res !== undefined && size ? res / size : undefined;
}

/** The CPUs this process (and so each server it starts) may run on. */
function cpusAllowed(): string {
  const status = readFileSync('/proc/self/status', 'utf8');
  return /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1] ?? '?';
}

/** Spawning and connecting once beforehand, so that the first timed start does not pay for this process's own lazy setup. */
async function warmUp(): Promise<void> {
  await Bun.spawn([process.execPath, '--version'], { stdout: 'ignore' }).exited;
  const server = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response('ok') });
  try {
    await httpStatus(server.port ?? 0, 'GET /');
  } finally {
    await server.stop(true);
  }
}

/** How the idle row of an executable is named for the state of its file in the page cache (see the top of this file). */
const PAGE_CACHE = {
  written: { figure: 'idle RSS after the first request', note: '; the file as written (large folios in the page cache)' },
  readBack: { figure: 'idle RSS after the first request, the file read back from disk', note: '; 4 KiB pages in the page cache, as after a reboot' },
};

function startRows(
  bench: string,
  subject: string,
  run: { starts: Start[]; cpuMsPerStart: number },
  idleMs: number,
  goals: boolean,
  idleAs: { figure: string; note: string } = { figure: 'idle RSS after the first request', note: '' },
): Row[] {
  const { starts } = run;
  const ok = starts.map((s) => s.okMs);
  const line = starts.map((s) => s.lineMs);
  const idle = starts.flatMap((s) => (s.rssIdle === undefined ? [] : [s.rssIdle]));
  const n = starts.length;
  const count = n === 1 ? '1 start' : `${n} starts`;
  return [
    {
      bench,
      subject,
      figure: 'cold start: spawn → listening line, p50',
      value: quantile(line, 0.5),
      unit: 'ms',
      note: `p90 ${ms(quantile(line, 0.9))}, max ${ms(Math.max(...line))}; ${count}`,
    },
    {
      bench,
      subject,
      figure: 'cold start: spawn → first 200, p50',
      value: quantile(ok, 0.5),
      unit: 'ms',
      goal: goals ? { op: '<=', value: 50 } : undefined,
      note: `p90 ${ms(quantile(ok, 0.9))}, max ${ms(Math.max(...ok))}; ${count}, warm page cache; bench process ${run.cpuMsPerStart.toFixed(1)} ms CPU per start`,
    },
    { bench, subject, figure: 'RSS after the first request', value: median(starts.map((s) => s.rssAfterRequest)) / MB, unit: 'MB', note: `median of ${n}; MB = 10^6 B` },
    {
      bench,
      subject,
      figure: idleAs.figure,
      value: median(idle) / MB,
      unit: 'MB',
      goal: goals ? { op: '<=', value: 45 } : undefined,
      note: `median of ${idle.length}, each after ${(idleMs / 1000).toFixed(1)} s idle; MB = 10^6 B${idleAs.note}`,
    },
  ];
}

/**
 * Drops `path` from the page cache, written to disk first (`sync FILE`, `dd iflag=nocache count=0`:
 * this file's clean pages alone, no root needed); false when that cannot be done here.
 */
function dropFromPageCache(path: string): boolean {
  if (!Bun.which('sync') || !Bun.which('dd')) return false;
  if (Bun.spawnSync(['sync', path], { stdout: 'ignore', stderr: 'ignore' }).exitCode !== 0) return false;
  return Bun.spawnSync(['dd', `if=${path}`, 'iflag=nocache', 'count=0', 'status=none'], { stdout: 'ignore', stderr: 'ignore' }).exitCode === 0;
}

const cachedNote = (share: number | undefined) => (share === undefined ? '' : `; ${(share * 100).toFixed(0)} % of the file was in the page cache before it`);

interface ExecutableRuns {
  /** Starts with the file as written, and how many of them (the last) wait idle. */
  runs: number;
  idleRuns: number;
  /** Starts after its page cache was dropped, each of them waiting idle. */
  readBackRuns: number;
  idleMs: number;
}

/**
 * An executable copied into a directory of its own, measured as written and then read back from disk
 * (see the top of this file): the rows of both, and what the log says of them.
 */
async function measureExecutable(bench: string, name: string, file: string, path: string, runs: ExecutableRuns, goals: boolean, log: (line: string) => void): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-executable-'));
  try {
    const copy = join(dir, file.split('/').pop() ?? 'executable');
    copyFileSync(file, copy);
    const subject: Subject = { name, command: [copy], path };
    const written = await startMany(subject, runs.runs, runs.idleRuns, runs.idleMs);
    const first = written.starts[0] as Start;
    log(
      `binary: ${name}, as written: first ${ms(first.okMs)}, then ${written.starts
        .slice(1)
        .map((s) => s.okMs.toFixed(1))
        .join(' ')} ms`,
    );
    const [line, ok, afterRequest, idle] = startRows(bench, name, written, runs.idleMs, goals, PAGE_CACHE.written);
    const rows: Row[] = goals
      ? [
          line as Row,
          ok as Row,
          { bench, subject: name, figure: 'cold start: spawn → first 200, first run', value: first.okMs, unit: 'ms', note: 'the first start of this run, the file as written' },
          afterRequest as Row,
          idle as Row,
        ]
      : [ok as Row, idle as Row];
    if (!dropFromPageCache(copy)) {
      log(`binary: ${name}: its page cache cannot be dropped here (sync, dd): the rows read back from disk are left out`);
      return rows;
    }
    const cached = cachedShare(copy);
    const readBack = await startMany(subject, runs.readBackRuns, runs.readBackRuns, runs.idleMs);
    const [, , , readBackIdle] = startRows(bench, name, readBack, runs.idleMs, false, PAGE_CACHE.readBack);
    const coldest = readBack.starts[0] as Start;
    log(`binary: ${name}, read back from disk: first ${ms(coldest.okMs)}${cachedNote(cached)}`);
    if (goals)
      rows.push({
        bench,
        subject: name,
        figure: 'cold start from disk: spawn → first 200',
        value: coldest.okMs,
        unit: 'ms',
        note: `its page cache dropped before it${cachedNote(cached)}`,
      });
    rows.push(readBackIdle as Row);
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Size, cold start and idle memory of the compiled executable, with the anchors, `bun src/index.ts` and the PeerJS server beside it. */
export async function benchBinary(options: BinaryOptions): Promise<Row[]> {
  const { smoke, log } = options;
  const bench = 'executable: start and idle';
  const idleMs = smoke ? 500 : 2_000;
  const rows: Row[] = [];
  log(`binary: servers run on CPUs ${cpusAllowed()} (this process's affinity)`);
  await warmUp();
  const runs: ExecutableRuns = { runs: smoke ? 3 : 20, idleRuns: smoke ? 1 : 3, readBackRuns: smoke ? 1 : 5, idleMs };

  const binary = await findBinary(options);
  if (binary) {
    const size = statSync(binary).size;
    rows.push({ bench, subject: 'switchboard executable', figure: 'file size', value: size / MB, unit: 'MB', note: `MB = 10^6 B; ${(size / 2 ** 20).toFixed(1)} MiB` });
    rows.push(...(await measureExecutable(bench, 'switchboard executable', binary, '/healthz', runs, true, log)));
  }

  // The anchors, compiled with the same flags: Bun's own floor for an executable (a hello-world), and
  // the fixed stack's (Elysia with the two plugins switchboard uses, one route).
  const anchors = [
    { file: 'hello.ts', name: 'compiled Bun hello-world (the anchor)' },
    { file: 'elysia-hello.ts', name: 'compiled Elysia hello-world, with @elysiajs/cors and @elysiajs/openapi' },
  ];
  for (const { file, name } of anchors) {
    const anchor = await buildAnchor(file, log);
    if (!anchor) continue;
    try {
      rows.push(...(await measureExecutable(bench, name, anchor.path, '/', runs, false, log)));
    } finally {
      anchor.remove();
    }
  }

  // Comparisons: the same app run from source by bun, and the PeerJS server under its own runtime.
  const comparisons: Subject[] = [
    { name: 'bun src/index.ts (not compiled)', command: [process.execPath, 'src/index.ts'], path: '/healthz' },
    Bun.which('node')
      ? { name: 'PeerJS server (node)', command: ['node', join(import.meta.dir, 'servers/peerjs.mjs')], path: '/' }
      : { name: 'PeerJS server (bun, no node)', command: [process.execPath, join(import.meta.dir, 'servers/peerjs.mjs')], path: '/' },
  ];
  for (const subject of comparisons) {
    const run = await startMany(subject, smoke ? 1 : 10, smoke ? 1 : 2, idleMs);
    const [, ok, , idle] = startRows(bench, subject.name, run, idleMs, false);
    rows.push(ok as Row, idle as Row);
  }
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean', default: false }, binary: { type: 'string' } } });
  const rows = await benchBinary({ smoke: values.smoke ?? false, binary: values.binary, log: (line) => console.error(line) });
  console.log(formatRows(rows));
}
