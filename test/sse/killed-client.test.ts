import { afterAll, expect, test } from 'bun:test';
import { join } from 'node:path';
import { post, startServer } from '../helpers';
import { spawnJsonLines } from '../process-helpers';

const reader = join(import.meta.dir, '..', 'fixtures', 'sse-reader.ts');
// 1,000 messages as fast as they are acknowledged: more than the default message rate allows. The peers
// outlive any wait for a reader process to start on a busy machine: their timeout is not what is tested.
const server = startServer({ messageRatePerS: 0, peerMessageRatePerS: 0, peerTimeoutMs: 600_000 });
afterAll(() => server.stop());

/** A reader process whose received events the test sees line by line. */
function spawnReader(url: string, lastEventId?: string) {
  const { proc, lines, done } = spawnJsonLines<{ id?: string; event?: { type: string; payload: number }; status?: number }>([
    process.execPath,
    reader,
    url,
    ...(lastEventId ? [lastEventId] : []),
  ]);
  return { proc, lines, done, messages: () => lines.filter((l) => l.event?.type === 'seq') };
}

test('a killed client resumes with Last-Event-ID over 1,000 messages: none lost, none twice, in order', async () => {
  const { url } = server;
  await post(`${url}/register/s/sender`);
  await post(`${url}/register/s/device`);
  const events = `${url}/events/s/device`;

  const first = spawnReader(events);
  while (!first.lines.some((l) => l.status === 200)) await Bun.sleep(5);

  let second: ReturnType<typeof spawnReader> | undefined;
  let seen: number[] = [];
  for (let seq = 0; seq < 1000; seq++) {
    // A client that is told to back off (429) retries: only acknowledged messages count as sent.
    for (;;) {
      const { status } = await post(`${url}/message/s/sender`, { target: 'device', type: 'seq', payload: seq });
      if (status === 200 || status === 202) break;
      expect(status).toBe(429);
      await Bun.sleep(10);
    }
    if (seq === 400) {
      // The device loses power mid-stream: what it printed is all it ever got.
      while (first.messages().length < 300) await Bun.sleep(1);
      first.proc.kill('SIGKILL');
      await first.proc.exited;
      await first.done;
      const got = first.messages();
      seen = got.map((l) => l.event!.payload);
      second = spawnReader(events, got.at(-1)!.id);
    }
  }
  if (!second) throw new Error('the second reader never started');
  const deadline = Date.now() + 10_000;
  while (seen.length + second.messages().length < 1000 && Date.now() < deadline) await Bun.sleep(10);
  second.proc.kill();
  seen.push(...second.messages().map((l) => l.event!.payload));
  expect(seen.length).toBe(1000);
  expect(seen).toEqual([...Array(1000).keys()]);
}, 30_000);
