// `bun run build`: the executable, dist/switchboard, compiled twice.
//
// 1. Into a temporary directory, with bytecode, and a JIT policy of 100 for its start: the code that
//    runs once while the server starts (the settings' checks, the routes' schemas) stays in the
//    interpreter instead of being compiled, and src/index.ts sets the policy back to 1 once it listens.
// 2. That executable is started twice (PORT=0 on 127.0.0.1, asked GET /healthz, the second time also a
//    relay publisher's registration, stopped with SIGTERM) with BUN_BYTECODE_ORDER_OUT, which writes
//    down the functions each start runs.
// 3. dist/switchboard is compiled with that order: the bytecode a start reads lies together at the
//    front of the executable, rather than spread over its pages.
//
// What it saves is in BENCHMARKS.md (*Idle RSS ≤ 45 MB*): about 8 MB of the memory an idle server
// holds, most of it pages of the file that a start no longer reads, and about a fifth of the time to
// its first answer. If a start of step 2 fails (no loopback, say), dist/switchboard is built without
// the order, and a line says so.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMPILE_FLAGS } from './compile-flags';
import { httpStatus } from './http-status';

const root = join(import.meta.dir, '..');
const outfile = join(root, 'dist', 'switchboard');
/** The start that is written down gives up past this. */
const RECORD_TIMEOUT_MS = 20_000;

async function compile(out: string, flags: string[]): Promise<void> {
  const build = Bun.spawn([process.execPath, 'build', ...COMPILE_FLAGS, ...flags, join(root, 'src', 'index.ts'), '--outfile', out], { cwd: root, stdout: 'inherit', stderr: 'inherit' });
  if ((await build.exited) !== 0) throw new Error(`bun build failed (exit ${build.exitCode})`);
}

/**
 * Starts `executable`, asks it each of `requests` in turn (each answered 200) and stops it; resolves
 * once it wrote the functions it ran into `order`.
 */
async function recordStart(executable: string, order: string, requests: readonly string[]): Promise<void> {
  const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir(), PORT: '0', HOST: '127.0.0.1', BUN_BYTECODE_ORDER_OUT: order };
  const proc = Bun.spawn([executable], { env, stdout: 'pipe', stderr: 'inherit' });
  const timer = setTimeout(() => proc.kill('SIGKILL'), RECORD_TIMEOUT_MS);
  try {
    const reader = proc.stdout.getReader();
    const decoder = new TextDecoder();
    let text = '';
    let port = 0;
    while (!port) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`it exited before listening (exit ${await proc.exited})`);
      text += decoder.decode(value, { stream: true });
      port = Number(/listening on http:\/\/[^\s"]*:(\d+)/.exec(text)?.[1] ?? 0);
    }
    // Its log goes on being read, so that a full pipe never stalls it.
    void (async () => {
      while (!(await reader.read()).done);
    })().catch(() => {});
    for (const request of requests) {
      const status = await httpStatus(port, request, RECORD_TIMEOUT_MS);
      if (status !== 200) throw new Error(`${request} answered ${status}`);
    }
    proc.kill('SIGTERM');
    if ((await proc.exited) !== 0) throw new Error(`it exited with ${proc.exitCode} on SIGTERM`);
    if (!statSync(order, { throwIfNoEntry: false })?.size) throw new Error('it wrote no order of its functions');
  } finally {
    clearTimeout(timer);
    proc.kill('SIGKILL');
  }
}

// Flags given to `bun run build` (`--target=bun-linux-arm64`, say) are for the executable built last;
// the start is written down from one built for this machine, which can run it. The order names the
// functions of the bundle, which a build for another target has too; how well it lays out such a
// build is not measured here.
const extra = process.argv.slice(2);
const work = mkdtempSync(join(tmpdir(), 'switchboard-build-'));
try {
  const first = join(work, 'switchboard');
  await compile(first, []);
  // Two starts, the most common first: one asked only for /healthz, and one where a relay session's
  // publisher registers and is answered with the server's offer (the relay's engine, werift, loaded on
  // the way, as at a server's first relay session or with RELAY_PREWARM=on).
  const starts = [['GET /healthz'], ['GET /healthz', 'POST /register/build/camera?mode=relay&role=publish&offer=inline']].map((requests, i) => ({
    requests,
    order: join(work, `bytecode-order-${i}`),
  }));
  let ordered = [`--bytecode-order=${starts.map((start) => start.order).join(',')}`];
  try {
    for (const { requests, order } of starts) await recordStart(first, order, requests);
  } catch (e) {
    ordered = [];
    console.warn(`build: the start of the first executable could not be written down (${(e as Error).message}); dist/switchboard keeps its bytecode in the first layout`);
  }
  await compile(outfile, [...ordered, ...extra]);
} finally {
  rmSync(work, { recursive: true, force: true });
}
