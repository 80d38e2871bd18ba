import { join } from 'node:path';
import { runToEnd } from './process-helpers';

const root = join(import.meta.dir, '..');
let built: Promise<string> | undefined;

/**
 * Builds dist/switchboard once per test run (`bun run build`) and resolves with its path. Every test
 * file that needs the executable shares the one build: bun test loads modules once for all files.
 */
export function compiledBinary(): Promise<string> {
  built ??= (async () => {
    const build = await runToEnd([process.execPath, 'run', 'build'], {}, root);
    if (build.code !== 0) throw new Error(`bun run build failed:\n${build.output}`);
    return join(root, 'dist', 'switchboard');
  })();
  return built;
}
