// `bun run bench --smoke`: the harness runs every benchmark with tiny counts, so that it keeps working.
// The figures of a smoke run mean nothing and are not checked; that each benchmark produced its rows is.
import { describe, expect, test } from 'bun:test';
import { join } from 'node:path';

const root = join(import.meta.dir, '..');

describe('bun run bench --smoke', () => {
  test('every benchmark runs and the harness prints one table with its rows', async () => {
    const run = Bun.spawn([process.execPath, 'bench/index.ts', '--smoke'], { cwd: root, stdout: 'pipe', stderr: 'pipe', env: process.env });
    const [out, err, code] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited]);
    if (code !== 0) console.error(err);
    expect(code).toBe(0);
    expect(out).toContain('| benchmark | subject | figure | value | goal | |');
    const rows = out.split('\n').filter((line) => line.startsWith('| ') && !line.startsWith('| benchmark'));
    for (const subject of ['switchboard', 'PeerJS', 'switchboard relay']) expect(rows.some((row) => row.includes(subject))).toBe(true);
    // No row is left without a figure (a dash stands for a figure that could not be measured).
    expect(rows.filter((row) => row.split('|')[4]?.trim().startsWith('—'))).toEqual([]);
    expect(out).toMatch(/\d+ figures; of \d+ goals, \d+ met, \d+ not met/);
  }, 240_000);

  test('the heap per message relayed is measured with the collector off, and refused with it on', async () => {
    const measure = async (env: Record<string, string | undefined>) => {
      const run = Bun.spawn([process.execPath, 'bench/message-alloc.ts', '500'], { cwd: root, stdout: 'pipe', stderr: 'pipe', env });
      const [out, err, code] = await Promise.all([new Response(run.stdout).text(), new Response(run.stderr).text(), run.exited]);
      return { out, err, code };
    };
    const off = await measure({ ...process.env, BUN_JSC_useGC: 'false' });
    expect(off.code).toBe(0);
    const [, bytes, frames] = (/^(\d+) B of heap per message relayed \(500 messages, frames (\d+) B on average\)$/m.exec(off.out) ?? []).map(Number);
    // At least the frame written for each message, which the harness joins as a socket does.
    expect(frames).toBeGreaterThan(500);
    expect(bytes).toBeGreaterThan(frames as number);
    const on = await measure({ ...process.env, BUN_JSC_useGC: undefined });
    expect(on.code).toBe(2);
    expect(on.err).toContain('BUN_JSC_useGC=false');
  }, 60_000);
});
