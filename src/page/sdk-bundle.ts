// Macros (`import … with { type: 'macro' }`): they run when Bun transpiles the importing module, from
// source at start and in `bun build --compile`, whose executable then carries their result as a string.
// Bun.build cannot run inside a macro while the bundler waits for it, so the CLI builds the library.
import { readFileSync } from 'node:fs';

const SDK = `${import.meta.dir}/../client/sdk`;

/** The client library as one ES module for browsers: what /sdk/switchboard.js serves. */
export function sdkScript(): string {
  const built = Bun.spawnSync([process.execPath, 'build', `${SDK}/index.ts`, '--target=browser', '--format=esm', '--minify-syntax', '--minify-whitespace'], {
    stderr: 'pipe',
  });
  if (!built.success) throw new Error(`the client library does not build: ${built.stderr.toString()}`);
  return built.stdout.toString();
}

/** Its declarations: what /sdk/switchboard.d.ts serves. */
export function sdkDeclarations(): string {
  return readFileSync(`${SDK}/switchboard.d.ts`, 'utf8');
}
