import type { Subprocess } from 'bun';

export interface ServerProcess {
  url: string;
  proc: Subprocess<'ignore', 'pipe', 'pipe'>;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number>;
}

/**
 * Starts a server process (`bun src/index.ts`, or the compiled binary) on 127.0.0.1 and a free port,
 * and resolves once its startup line says where it listens.
 */
export async function spawnServer(cmd: string[], options: { env?: Record<string, string>; cwd?: string } = {}): Promise<ServerProcess> {
  const proc = Bun.spawn(cmd, {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', ...options.env },
    stdin: 'ignore',
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
    proc,
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
