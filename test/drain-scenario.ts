// How a real server process stops, checked the same way for `bun src/index.ts` and the executable.
import { expect } from 'bun:test';
import { finalStatus, startInFlight } from './in-flight';
import type { ServerProcess } from './process-helpers';
import { openEvents } from './sse-client';

/** The process's JSON log lines (those that are not JSON, if any, are left out). */
export function logLines(server: ServerProcess): Record<string, unknown>[] {
  return server
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line));
}

/**
 * On `signal` the server ends its open stream at once, still answers the request it was in the middle
 * of, and exits 0.
 */
export async function expectGracefulStop(server: ServerProcess, signal: NodeJS.Signals): Promise<void> {
  const { url } = server;
  await fetch(`${url}/register/s/a`, { method: 'POST' });
  await fetch(`${url}/register/s/b`, { method: 'POST' });
  const stream = await openEvents(`${url}/events/s/b`);
  const inFlight = await startInFlight(url, '/message/s/a', JSON.stringify({ target: 'b', type: 'offer', payload: { sdp: 'v=0' } }));

  server.proc.kill(signal);
  await stream.ended;
  inFlight.finish();
  expect(finalStatus(await inFlight.closed)).toBe(202);
  expect(await server.proc.exited).toBe(0);
  const lines = logLines(server);
  expect(lines.find((l) => l.msg === 'stopped')).toMatchObject({ level: 'info', outcome: 'drained' });
  expect(lines.find((l) => l.msg === `${signal}: stopping`)).toBeDefined();
}

/** A request still open at SHUTDOWN_TIMEOUT_MS is cut, and the server exits 0 all the same. */
export async function expectForcedStop(server: ServerProcess): Promise<void> {
  await fetch(`${server.url}/register/s/a`, { method: 'POST' });
  const inFlight = await startInFlight(server.url, '/message/s/a', '{"type":"never-sent"}');
  server.proc.kill('SIGTERM');
  expect(await server.proc.exited).toBe(0);
  expect(finalStatus(await inFlight.closed)).toBeUndefined();
  expect(logLines(server).find((l) => l.msg === 'stopped')).toMatchObject({ outcome: 'forced' });
}
