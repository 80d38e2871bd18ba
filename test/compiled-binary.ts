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
    const build = await runToEnd([process.execPath, 'run', 'build'], {}, root);
    if (build.code !== 0) throw new Error(`bun run build failed:\n${build.output}`);
    return { path: join(root, 'dist', 'switchboard'), output: build.output };
  })();
  return built;
}

/** The path of dist/switchboard, built once per test run (see `compiledBuild`). */
export async function compiledBinary(): Promise<string> {
  return (await compiledBuild()).path;
}
