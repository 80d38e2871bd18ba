// The whole test suite, as users and CI run it (`bun run test`): system packages, dependencies, type
// check, format and lint, tests. Ends with one line, "N passed, N failed", the type check and the
// format-and-lint check counting as one check each.
import { $ } from 'bun';

const root = new URL('..', import.meta.url).pathname;
$.cwd(root);

/** Programs the tests start, and the Debian package of each. */
const programs: Record<string, string> = { openssl: 'openssl', chromium: 'chromium', turnserver: 'coturn', nginx: 'nginx', strace: 'strace', 'redis-server': 'redis-server' };

// nginx lives in /usr/sbin, which a user's PATH may leave out.
const path = `${process.env.PATH ?? ''}:/usr/sbin:/sbin`;
const missing = [
  ...new Set(
    Object.entries(programs)
      .filter(([cmd]) => !Bun.which(cmd, { PATH: path }))
      .map(([, pkg]) => pkg),
  ),
];
// Python modules the tests run with Debian's own python3 (test/whip: aiortc, a second WebRTC stack).
const pythonModules: Record<string, string> = { aiortc: 'python3-aiortc' };
for (const [module, pkg] of Object.entries(pythonModules)) {
  const found = Bun.which('/usr/bin/python3') !== null && Bun.spawnSync(['/usr/bin/python3', '-c', `import ${module}`]).exitCode === 0;
  if (!found) missing.push(pkg);
}
if (missing.length) {
  const install = `apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  if (process.getuid?.() === 0 && Bun.which('apt-get')) {
    console.log(`installing ${missing.join(', ')}`);
    await $`apt-get update -qq`;
    await $`${{ raw: install }}`.env({ ...process.env, DEBIAN_FRONTEND: 'noninteractive' });
  } else {
    console.error(`The tests need ${missing.join(', ')}. Install them, then run again:\n  sudo apt-get update && sudo ${install}`);
    process.exit(1);
  }
}

await $`bun install --frozen-lockfile`;

let passed = 0;
let failed = 0;

const typecheck = await $`bun x tsc --noEmit`.nothrow();
if (typecheck.exitCode === 0) {
  passed++;
  console.log('type check: ok');
} else {
  failed++;
  console.log('type check: FAILED');
}

// Formatting and lint (Biome, biome.json): `bun x biome check --write .` fixes what it can.
const style = await $`bun x biome check .`.nothrow();
if (style.exitCode === 0) {
  passed++;
  console.log('format and lint: ok');
} else {
  failed++;
  console.log('format and lint: FAILED (bun x biome check --write . fixes formatting)');
}

// Several tests start processes, nginx or the compiled binary: allow for a loaded machine.
const tests = Bun.spawn([process.execPath, 'test', '--timeout', '20000', ...process.argv.slice(2)], { cwd: root, stdout: 'inherit', stderr: 'pipe', env: process.env });
// bun test writes its report to stderr: pass it through and read the totals from it.
let report = '';
const decoder = new TextDecoder();
for await (const chunk of tests.stderr as unknown as AsyncIterable<Uint8Array>) {
  const text = decoder.decode(chunk, { stream: true });
  report += text;
  process.stderr.write(text);
}
const code = await tests.exited;
const count = (word: string) =>
  Number(
    /^\s*(\d+) (?:pass|fail)$/m.exec(
      report
        .split('\n')
        .filter((l) => l.trim().endsWith(` ${word}`))
        .at(-1) ?? '',
    )?.[1] ?? 0,
  );
passed += count('pass');
failed += count('fail');
if (code !== 0 && count('fail') === 0) failed++; // the runner itself failed (a file did not load, say)

console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
