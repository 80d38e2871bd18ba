// What GET /events does on a listener of its own: the store-dependent scenarios (the seed flow, resume,
// leaving, slow readers) run on both stores in test/contract/events.test.ts.
import { describe, expect, test } from 'bun:test';
import { post, serversPerTest } from '../helpers';
import { ofType, openEvents } from '../sse-client';

describe('reconnects', () => {
  const { listen, streams } = serversPerTest();

  test('streams outlive the idle timeout of the listener', async () => {
    // An idle timeout of 1 s and no pings: without server.timeout(req, 0) the stream would be cut.
    const { url } = listen({ pingIntervalMs: 60_000 }, {}, { idleTimeout: 1 });
    await post(`${url}/register/s/a`);
    await post(`${url}/register/s/b`);
    const b = await openEvents(`${url}/events/s/b`);
    streams.push(b);
    await Bun.sleep(2500);
    expect((await post(`${url}/message/s/a`, { target: 'b', type: 'late' })).status).toBe(200);
    await b.next(ofType('late'));
  });
});
