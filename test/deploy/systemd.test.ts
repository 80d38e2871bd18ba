// deploy/switchboard.service and its TLS drop-in, checked by systemd's own tools where they exist.
import { afterAll, describe, expect, test } from 'bun:test';
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig } from '../helpers';
import { runToEnd } from '../process-helpers';

const deploy = join(import.meta.dir, '..', '..', 'deploy');
const analyze = Bun.which('systemd-analyze');
if (!analyze) console.log('systemd-analyze is not installed: the checks of deploy/switchboard.service by systemd itself are skipped');
const dir = mkdtempSync(join(tmpdir(), 'switchboard-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Settings of the unit, as `key → values` (a key may repeat). */
async function settings(): Promise<Map<string, string[]>> {
  const map = new Map<string, string[]>();
  for (const line of (await Bun.file(join(deploy, 'switchboard.service')).text()).split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) map.set(m[1] as string, [...(map.get(m[1] as string) ?? []), m[2] as string]);
  }
  return map;
}

/**
 * The unit and its drop-in in a directory of their own, the executable pointing at one that exists
 * here (verify checks that it does).
 */
async function installed(): Promise<string> {
  const unit = join(dir, 'switchboard.service');
  const text = await Bun.file(join(deploy, 'switchboard.service')).text();
  await Bun.write(unit, text.replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`));
  mkdirSync(join(dir, 'switchboard.service.d'), { recursive: true });
  cpSync(join(deploy, 'tls.conf'), join(dir, 'switchboard.service.d', 'tls.conf'));
  return unit;
}

describe('deploy/switchboard.service', () => {
  test('runs the executable as a hardened dynamic user, restarted on failure, settings from an environment file', async () => {
    const unit = await settings();
    expect(unit.get('ExecStart')).toEqual(['/usr/local/bin/switchboard']);
    expect(unit.get('EnvironmentFile')).toEqual(['-/etc/switchboard/env']);
    for (const [key, value] of [
      ['DynamicUser', 'yes'],
      ['NoNewPrivileges', 'yes'],
      ['Restart', 'on-failure'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['KillSignal', 'SIGTERM'],
    ]) {
      expect({ key, value: unit.get(key as string) }).toEqual({ key, value: [value as string] });
    }
    // The JIT needs writable-then-executable memory.
    expect(unit.has('MemoryDenyWriteExecute')).toBe(false);
    // systemd waits longer than the server's own shutdown deadline.
    expect(Number(unit.get('TimeoutStopSec')?.[0]) * 1000).toBeGreaterThan(defaultConfig().shutdownTimeoutMs);
  });

  test.skipIf(!analyze)('systemd-analyze verify finds nothing to say about it or its TLS drop-in', async () => {
    const { code, output } = await runToEnd([analyze as string, 'verify', await installed()]);
    expect(output.trim()).toBe('');
    expect(code).toBe(0);
  });

  test.skipIf(!analyze)('systemd-analyze security rates its exposure low', async () => {
    // The threshold is in tenths of the 0–10 scale it prints.
    const { code, output } = await runToEnd([analyze as string, 'security', '--offline=true', '--threshold=20', await installed()]);
    const exposure = Number(/Overall exposure level for switchboard\.service: ([\d.]+)/.exec(output)?.[1]);
    expect(exposure).toBeLessThanOrEqual(2.0);
    expect(code).toBe(0);
  });
});
