import { readdirSync } from 'node:fs';
import type { Collector, Exposition } from './exposition';

export interface BuildInfo {
  version: string;
}

/** Counts this process's open file descriptors, where /proc tells (Linux); undefined elsewhere. */
function openFds(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}

/**
 * The process metrics every Prometheus client exposes under these standard names (memory, CPU, file
 * descriptors, start time), plus `switchboard_build_info`.
 */
export class ProcessMetrics implements Collector {
  private readonly startTimeS = Math.round(performance.timeOrigin) / 1000;

  constructor(private readonly build: BuildInfo) {}

  collect(out: Exposition): void {
    const cpu = process.cpuUsage();
    const memory = process.memoryUsage();
    out.single('process_cpu_user_seconds_total', 'counter', 'User CPU time spent, in seconds.', cpu.user / 1e6);
    out.single('process_cpu_system_seconds_total', 'counter', 'System CPU time spent, in seconds.', cpu.system / 1e6);
    out.single('process_cpu_seconds_total', 'counter', 'User and system CPU time spent, in seconds.', (cpu.user + cpu.system) / 1e6);
    out.single('process_resident_memory_bytes', 'gauge', 'Resident memory size, in bytes.', memory.rss);
    out.single('process_heap_bytes', 'gauge', 'JavaScript heap in use, in bytes.', memory.heapUsed);
    out.single('process_start_time_seconds', 'gauge', 'Start time of the process since the Unix epoch, in seconds.', this.startTimeS);
    const fds = openFds();
    if (fds !== undefined) out.single('process_open_fds', 'gauge', 'Open file descriptors.', fds);
    out.single('switchboard_build_info', 'gauge', 'Always 1; the labels say which build is running.', 1, {
      version: this.build.version,
      bun: Bun.version,
    });
  }
}
