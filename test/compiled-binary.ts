import { join } from 'node:path';
import { runToEnd } from './process-helpers';

const root = join(import.meta.dir, '..');
let built: Promise<{ path: string; output: string }> | undefined;

/**
 * Builds dist/switchboard once per test run (`bun run build`) and resolves with its path and what the
 * build printed. Every test file that needs the executable shares the one build: bun test loads
 * modules once for all files.
 */
export function compiledBuild(): Promise<{ path: string; output: string }> {
  built ??= (async () => {
    // A proxy that answers nothing, as a build machine's HTTP_PROXY may be: the build's own start of
    // the executable must not go through it (deploy/build.ts, test/binary.test.ts).
    const build = await runToEnd([process.execPath, 'run', 'build'], { HTTP_PROXY: 'http://127.0.0.1:9', http_proxy: 'http://127.0.0.1:9' }, root);
    if (build.code !== 0) throw new Error(`bun run build failed:\n${build.output}`);
    return { path: join(root, 'dist', 'switchboard'), output: build.output };
  })();
  return built;
}

/** The path of dist/switchboard, built once per test run (see `compiledBuild`). */
export async function compiledBinary(): Promise<string> {
  return (await compiledBuild()).path;
}
