// The holders' progress against Redis's answers, with Redis's answer and the channel's frames in the
// test's hands: the order a real cluster produces now and then (a session closed between a progress
// store's call and its answer, its last frame still on the channel) made deterministic.
import { describe, expect, test } from 'bun:test';
import { HeldStreams } from '../../src/cluster/held-streams';
import { encodeFrame, peerAddress } from '../../src/cluster/protocol';
import type { RedisLink } from '../../src/cluster/redis-link';
import { silentLogger } from '../../src/log/logger';
import { RecordingSink } from '../fixtures/recording-sink';

const address = { sessionId: 's', peerId: 'p' };
const key = peerAddress('s', 'p');
const SESSION_CLOSED = '"type":"session-closed"}';

/** A Redis link whose every script answers that each stream's attach is over (-1), telling each call's deadline (ARGV[5]). */
function overLink() {
  const deadlines: number[] = [];
  let called: () => void = () => {};
  const link = {
    async eval(_script: unknown, args: string[]) {
      deadlines.push(Number(args[0]));
      called();
      return [-1];
    },
    async command() {
      return [];
    },
  } as unknown as RedisLink;
  /** Resolves at the next script call, once its answer has been acted on. */
  const nextCall = () =>
    new Promise<void>((resolve) => {
      called = () => setImmediate(resolve);
    });
  return { link, deadlines, nextCall };
}

/** HeldStreams with bounds that make one written event store its cursor at once (a quarter of maxHeld = 1). */
function heldStreams(link: RedisLink) {
  return new HeldStreams({
    link,
    prefix: 'sb',
    // The arguments every script takes before its own (ARGV[1…4]); the deadline comes first after them.
    args: () => [],
    now: () => Date.now(),
    logger: silentLogger,
    bounds: { retain: 16, totalBytes: 1 << 20, maxHeld: 4, peerBytes: 1 << 20 },
    detached: () => {},
    relay: () => {},
  });
}

describe('cluster: a held stream against the answers of its progress stores', () => {
  test("a progress store answered 'attach over' leaves the stream open: the session's last frame, still on the channel, ends it", async () => {
    const { link, deadlines, nextCall } = overLink();
    const streams = heldStreams(link);
    const sink = new RecordingSink();
    streams.install(address, key, sink, 1, 0, []);
    const stored = nextCall();
    streams.handle(encodeFrame({ kind: 'event', address: key, id: 1, stamp: -1, members: '"type":"offer","payload":{},"senderId":"q"}' }));
    await stored;
    // A store of cursors alone (deadline 0), answered -1: the stream is still open.
    expect(deadlines).toEqual([0]);
    expect(sink.closed).toBe(false);
    // The close frame arrives: its last event is written, then the stream ends.
    streams.handle(encodeFrame({ kind: 'close', address: key, gen: 0, finalId: 2, members: SESSION_CLOSED }));
    expect(sink.written.map((w) => w.members)).toEqual(['"type":"offer","payload":{},"senderId":"q"}', SESSION_CLOSED]);
    expect(sink.closed).toBe(true);
    streams.closeAll();
  });

  test("a refresh answered 'attach over' ends the stream: this instance missed what ended it", async () => {
    const { link, deadlines } = overLink();
    const streams = heldStreams(link);
    const sink = new RecordingSink();
    streams.install(address, key, sink, 1, 0, []);
    await streams.refresh(Date.now() + 30_000);
    expect(deadlines.length).toBe(1);
    expect(deadlines[0]).toBeGreaterThan(0);
    expect(sink.closed).toBe(true);
    expect(streams.cursorOf(key)).toBeUndefined();
    streams.closeAll();
  });
});
