/** How many times more reluctant than normal the JIT is until the server listens (Bun.unsafe.setJITPolicy). */
export const START_JIT_POLICY = 100;

/** The flags of every compile of `bun run build` (deploy/build.ts), and of the benchmark's anchors (bench/binary.ts). */
export const COMPILE_FLAGS: readonly string[] = [
  '--compile',
  '--format=esm',
  '--splitting',
  '--bytecode',
  `--compile-jit-policy=${START_JIT_POLICY}`,
  '--minify-syntax',
  '--minify-whitespace',
  // An executable of Bun's reads `.env` and `bunfig.toml` from the directory it is started in unless told
  // not to, and a bunfig.toml's `preload` runs its scripts before the server's own code: the server takes
  // its settings from its environment and flags alone, and runs no code but its own.
  '--no-compile-autoload-dotenv',
  '--no-compile-autoload-bunfig',
];
