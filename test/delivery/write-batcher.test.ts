// The batcher that gives every stream's and socket's writes of a turn of the loop to them after it.
import { expect, test } from 'bun:test';
import { type Batched, WriteBatcher } from '../../src/delivery/write-batcher';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

test('the sinks given during a turn are flushed after it, in order; one whose flush throws is reported, and the others still go', async () => {
  const failures: unknown[] = [];
  const batcher = new WriteBatcher((error) => failures.push(error));
  const flushed: string[] = [];
  const sink = (name: string): Batched => ({ flush: () => void flushed.push(name) });
  const broken: Batched = {
    flush() {
      throw new Error('broken sink');
    },
  };
  batcher.add(sink('a'));
  batcher.add(broken);
  batcher.add(sink('b'));
  expect(flushed).toEqual([]);
  await turn();
  expect(flushed).toEqual(['a', 'b']);
  expect(failures.map((e) => (e as Error).message)).toEqual(['broken sink']);
  // The next turn has a batch of its own.
  batcher.add(sink('c'));
  await turn();
  expect(flushed).toEqual(['a', 'b', 'c']);
});
