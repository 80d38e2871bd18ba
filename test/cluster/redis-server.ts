import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Subprocess } from 'bun';
import { freePort } from '../fixtures/ports';

export interface RedisServerOptions {
  /** Append-only file with fsync on every write: a restart keeps everything acknowledged. */
  appendOnly?: boolean;
}

/**
 * A real `redis-server` on 127.0.0.1 and a free port, with its own temporary directory and no
 * snapshots. `stop()` and `start()` again keep the port: a restart as clients see it.
 */
export class RedisServer {
  readonly dir = mkdtempSync(join(tmpdir(), 'switchboard-redis-'));
  port = 0;
  private proc: Subprocess<'ignore', 'pipe', 'pipe'> | undefined;

  constructor(private readonly options: RedisServerOptions = {}) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Whether the server takes connections (a test runner may kill it, say after a test times out). */
  async accepts(): Promise<boolean> {
    try {
      const socket = await Bun.connect({ hostname: '127.0.0.1', port: this.port, socket: { data() {} } });
      socket.end();
      return true;
    } catch {
      return false;
    }
  }

  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const server = new RedisServer(options);
    await server.start();
    return server;
  }

  /** Starts the server (on the same port as before, after a stop). */
  async start(): Promise<void> {
    if (this.port) return this.spawn();
    for (let attempt = 0; ; attempt++) {
      this.port = freePort();
      try {
        return await this.spawn();
      } catch (e) {
        // Another process took the port between the probe and the start: another one.
        if (attempt >= 4) throw e;
      }
    }
  }

  private async spawn(): Promise<void> {
    const args = ['redis-server', '--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--logfile', '', '--protected-mode', 'no'];
    args.push('--appendonly', this.options.appendOnly ? 'yes' : 'no');
    if (this.options.appendOnly) args.push('--appendfsync', 'always');
    const proc = Bun.spawn(args, { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe' });
    this.proc = proc;
    let output = '';
    const decoder = new TextDecoder();
    const reader = proc.stdout.getReader();
    const deadline = Date.now() + 10_000;
    while (!output.includes('Ready to accept connections')) {
      const { value, done } = await reader.read();
      if (done || Date.now() > deadline) {
        proc.kill('SIGKILL');
        await proc.exited;
        throw new Error(`redis-server did not start on port ${this.port}:\n${output}`);
      }
      output += decoder.decode(value, { stream: true });
    }
    // Keep reading so that the server never blocks on a full pipe.
    void (async () => {
      for (;;) if ((await reader.read()).done) break;
    })();
  }

  /** Stops the server: SIGKILL, as a crash (the append-only file keeps what was written). */
  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null) return;
    proc.kill('SIGKILL');
    await proc.exited;
  }

  /** Freezes the server (SIGSTOP): connections stay open, nothing is answered. */
  pause(): void {
    this.proc?.kill('SIGSTOP');
  }

  /** Lets a frozen server go on (SIGCONT). */
  resume(): void {
    this.proc?.kill('SIGCONT');
  }

  /** Stops the server and removes its directory. */
  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
