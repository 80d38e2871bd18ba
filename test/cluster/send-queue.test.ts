import { describe, expect, test } from 'bun:test';
import type { SendReply } from '../../src/cluster/scripts';
import { MAX_MESSAGES_PER_CALL, SendQueue } from '../../src/cluster/send-queue';
import type { Batched } from '../../src/delivery/write-batcher';

/** A queue whose calls are answered by `answer`, held until the test flushes it as the link would. */
function queue(answer: (groups: string[]) => Promise<SendReply>) {
  const log: string[] = [];
  let holder: Batched | undefined;
  const q = new SendQueue({
    hold: (sink) => {
      holder = sink;
    },
    call: (groups) => {
      log.push(`call ${groups.join(',')}`);
      return answer(groups);
    },
    apply: (out) => {
      log.push(`apply ${out.join(',')}`);
    },
  });
  return { q, log, flush: () => holder?.flush() };
}

const ok = (n: number) => ({ status: 'ok' as const, messages: Array.from({ length: n }, () => ({ status: 'refused' as const })) });

describe('SendQueue: the senders of a turn in one call', () => {
  test('senders are split into calls of at most MAX_MESSAGES_PER_CALL messages, in order; a larger one goes alone', async () => {
    const { q, log, flush } = queue(async (groups) => ({ out: [], senders: groups.map((g) => ({ status: 'peer_not_found' as const, g })) }));
    const sizes = [20, 12, 1, MAX_MESSAGES_PER_CALL + 5, 3];
    const replies = sizes.map((n, i) => q.send([`g${i}`], n));
    flush();
    await Promise.all(replies);
    expect(log.filter((l) => l.startsWith('call'))).toEqual(['call g0,g1', 'call g2', 'call g3', 'call g4']);
  });

  test('the frames for this instance are applied before any sender hears its part; each hears its own', async () => {
    const { q, log, flush } = queue(async () => ({ out: ['frame'], senders: [ok(1), { status: 'forbidden' }] }));
    const first = q.send(['a'], 1).then((r) => log.push(`a ${r.status}`));
    const second = q.send(['b'], 1).then((r) => log.push(`b ${r.status}`));
    flush();
    await Promise.all([first, second]);
    expect(log).toEqual(['call a,b', 'apply frame', 'a ok', 'b forbidden']);
  });

  test('a call that fails, or answers for another number of senders, fails each of its senders', async () => {
    const failing = queue(async () => {
      throw new Error('Redis gone');
    });
    const both = [failing.q.send(['a'], 1), failing.q.send(['b'], 1)].map((p) => p.catch((e: Error) => e.message));
    failing.flush();
    expect(await Promise.all(both)).toEqual(['Redis gone', 'Redis gone']);

    const short = queue(async () => ({ out: ['frame'], senders: [ok(1)] }));
    const answered = [short.q.send(['a'], 1), short.q.send(['b'], 1)].map((p) => p.catch((e: Error) => e.message));
    short.flush();
    expect(await Promise.all(answered)).toEqual(['send: the script answered for 1 senders of 2', 'send: the script answered for 1 senders of 2']);
    // Nothing of a reply that does not fit is applied.
    expect(short.log).toEqual(['call a,b']);
  });
});
