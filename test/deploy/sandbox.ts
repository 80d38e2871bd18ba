// What deploy/switchboard.service lets the process do, and what the process did (from strace).
import { join } from 'node:path';
import { runToEnd } from '../process-helpers';

export const unitFile = join(import.meta.dir, '..', '..', 'deploy', 'switchboard.service');

/** The values of every `key=` line of the unit, in order. */
export async function unitValues(key: string): Promise<string[]> {
  const text = await Bun.file(unitFile).text();
  return [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1] as string);
}

/** The system calls of a systemd set (`@system-service`) or a single name, groups expanded. */
async function expand(analyze: string, name: string, seen = new Set<string>()): Promise<Set<string>> {
  if (!name.startsWith('@')) return new Set([name]);
  const { code, output } = await runToEnd([analyze, 'syscall-filter', name]);
  if (code !== 0) throw new Error(output);
  const calls = new Set<string>();
  for (const line of output.split('\n').slice(1)) {
    const item = line.trim();
    if (!item || item.startsWith('#') || seen.has(item)) continue;
    seen.add(item);
    for (const call of await expand(analyze, item, seen)) calls.add(call);
  }
  return calls;
}

/**
 * The system calls the unit's SystemCallFilter= lines allow: the first line is an allow list, and
 * each `~` line takes its sets away from it.
 */
export async function allowedSyscalls(analyze: string): Promise<Set<string>> {
  const allowed = new Set<string>();
  for (const line of await unitValues('SystemCallFilter')) {
    const deny = line.startsWith('~');
    for (const name of line.replace(/^~/, '').split(/\s+/).filter(Boolean)) {
      for (const call of await expand(analyze, name)) {
        if (deny) allowed.delete(call);
        else allowed.add(call);
      }
    }
  }
  return allowed;
}

/** The system calls and socket address families in an `strace -f` output. */
export function traced(trace: string): { syscalls: Set<string>; families: Set<string> } {
  const syscalls = new Set<string>();
  const families = new Set<string>();
  for (const line of trace.split('\n')) {
    // "1234  openat(AT_FDCWD, …) = 3", or the end of a call strace saw interrupted: "<... read resumed>".
    const call = /^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]/.exec(line)?.[1];
    if (call) syscalls.add(call);
    const family = /\bsocket\((AF_[A-Z0-9]+)/.exec(line)?.[1];
    if (family) families.add(family);
  }
  return { syscalls, families };
}
