// Starting a benchmark server as its own process, and reading what it used: shared by every benchmark.
// A server prints "listening <port>" once it listens; given "gc" on stdin it collects garbage and
// prints "rss <bytes> heap <bytes>".

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Subprocess, spawn } from 'bun';

export interface ServerProcess {
  base: string;
  pid: number;
  /** Sends "gc" and resolves with the RSS the server reports after collecting. */
  rss(): Promise<number>;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Pin the server to CPU 0 (the load then runs on CPU 1), when there is taskset. */
  pin?: boolean;
  /** Write a CPU profile of a Bun server into this directory (markdown, Bun's --cpu-prof-md). */
  profileDir?: string;
  env?: Record<string, string | undefined>;
}

/** Starts `command` and waits for its "listening" line. */
export async function startServer(name: string, command: string[], options: StartOptions = {}): Promise<ServerProcess> {
  if (options.profileDir && command[0] === process.execPath) {
    command = [process.execPath, '--cpu-prof-md', `--cpu-prof-dir=${options.profileDir}`, ...command.slice(1)];
  }
  if (options.pin && Bun.which('taskset')) command = ['taskset', '-c', '0', ...command];
  const proc: Subprocess<'pipe', 'pipe', 'inherit'> = spawn(command, {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'inherit',
    cwd: join(import.meta.dir, '..'),
    env: options.env ?? process.env,
  });
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  void (async () => {
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of proc.stdout as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        lines.push(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
        for (const w of waiters.splice(0)) w();
      }
    }
  })();
  const nextLine = async (prefix: string, timeoutMs = 15_000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = lines.findIndex((l) => l.startsWith(prefix));
      if (index >= 0) return lines.splice(index, 1)[0] as string;
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`${name} server: no "${prefix}" line (exit ${proc.exitCode})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  };
  const port = Number((await nextLine('listening ')).split(' ')[1]);
  return {
    base: `http://127.0.0.1:${port}`,
    pid: proc.pid,
    async rss() {
      proc.stdin.write('gc\n');
      proc.stdin.flush();
      return Number((await nextLine('rss ')).split(' ')[1]);
    },
    async stop() {
      proc.kill();
      await proc.exited;
    },
  };
}

/** CPU time (user + system) a process has used, in seconds. */
export function cpuSeconds(pid: number): number {
  // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th, in clock ticks.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Runs `fn` over `items`, `width` at a time. */
export async function inBatches<T, R>(items: T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += width) out.push(...(await Promise.all(items.slice(i, i + width).map(fn))));
  return out;
}

/** The CPUs this process may run on, as taskset lists them ("1", "0-1"); undefined without taskset. */
function allowedCpus(): string | undefined {
  const allowed = Bun.which('taskset') ? Bun.spawnSync(['taskset', '-pc', String(process.pid)], { stdout: 'pipe', stderr: 'ignore' }) : undefined;
  return allowed?.exitCode === 0 ? allowed.stdout.toString().split(':').pop()?.trim() : undefined;
}

/**
 * Runs `start` with every thread of this process allowed on every CPU, and pins them back after: what
 * `start` spawns (a browser, say) keeps every CPU, as on a machine of its own.
 */
export async function onEveryCpu<T>(start: () => Promise<T>): Promise<T> {
  const before = allowedCpus();
  if (!before || navigator.hardwareConcurrency < 2) return start();
  Bun.spawnSync(['taskset', '-a', '-cp', `0-${navigator.hardwareConcurrency - 1}`, String(process.pid)], { stdout: 'ignore' });
  try {
    return await start();
  } finally {
    Bun.spawnSync(['taskset', '-a', '-cp', before, String(process.pid)], { stdout: 'ignore' });
  }
}

/** Pins every thread of this process (the load) to CPU 1 when it may run on CPU 0, where the servers go. */
export function pinLoad(log: (line: string) => void): void {
  const list = allowedCpus();
  if (!list || navigator.hardwareConcurrency < 2) {
    log('the load is not pinned (taskset or a second CPU is missing): figures mix load and server');
    return;
  }
  const cpus = list.split(',').flatMap((part) => {
    const [from, to = from] = part.split('-').map(Number);
    return Array.from({ length: (to as number) - (from as number) + 1 }, (_, i) => (from as number) + i);
  });
  if (!cpus.includes(0)) return;
  Bun.spawnSync(['taskset', '-a', '-cp', '1', String(process.pid)], { stdout: 'ignore' });
}
