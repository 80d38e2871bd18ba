import type { Subprocess } from 'bun';

export interface ServerProcess<In extends 'ignore' | 'pipe' = 'ignore'> {
  url: string;
  port: number;
  proc: Subprocess<In, 'pipe', 'pipe'>;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number>;
}

/**
 * Starts a server process (`bun src/index.ts`, or the compiled binary) on 127.0.0.1 and a free port,
 * and resolves once its startup line says where it listens.
 */
export async function spawnServer<In extends 'ignore' | 'pipe' = 'ignore'>(
  cmd: string[],
  options: { env?: Record<string, string>; cwd?: string /** `pipe` for a server that reads commands. */; stdin?: In } = {},
): Promise<ServerProcess<In>> {
  const proc = Bun.spawn(cmd, {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', ...options.env },
    stdin: options.stdin ?? 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  });
  let output = '';
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) output += decoder.decode(chunk, { stream: true });
  };
  void collect(proc.stdout);
  void collect(proc.stderr);
  const deadline = Date.now() + 15_000;
  let url: string | undefined;
  while (!url) {
    url = /listening on (https?:\/\/\S+)/.exec(output)?.[1];
    if (url) break;
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`server did not start (exit ${proc.exitCode}):\n${output}`);
    }
    await Bun.sleep(10);
  }
  return {
    url,
    port: Number(new URL(url).port),
    proc: proc as Subprocess<In, 'pipe', 'pipe'>,
    output: () => output,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null) proc.kill(signal);
      return await proc.exited;
    },
  };
}

/** Runs a command to completion, returning its exit code and output. */
export async function runToEnd(cmd: string[], env: Record<string, string> = {}, cwd?: string): Promise<{ code: number; output: string }> {
  const proc = Bun.spawn(cmd, { cwd, env: { PATH: process.env.PATH ?? '', ...env }, stdout: 'pipe', stderr: 'pipe' });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, output: stdout + stderr };
}

/**
 * Spawns a process that writes one JSON value per line on stdout (a test's reader fixture) and collects
 * the values as they come.
 */
export function spawnJsonLines<Line>(cmd: string[]): { proc: Subprocess<'ignore', 'pipe', 'inherit'>; lines: Line[]; done: Promise<void> } {
  const proc = Bun.spawn(cmd, { stdout: 'pipe', stderr: 'inherit' });
  const lines: Line[] = [];
  const done = (async () => {
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of proc.stdout as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buffer.slice(0, nl)));
        buffer = buffer.slice(nl + 1);
      }
    }
  })();
  return { proc, lines, done };
}
