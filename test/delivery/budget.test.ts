// The byte budgets' gauge in one process. The budgets themselves are tried on both stores in
// test/contract/limits.test.ts.
import { describe, expect, test } from 'bun:test';
import { post, serversPerTest } from '../helpers';
import { scrape } from '../metrics/scrape';

describe('byte budgets, on a real listener', () => {
  const { listen } = serversPerTest();

  test('switchboard_event_bytes counts the bytes held for peers, never past MAX_EVENT_BYTES', async () => {
    const budget = 200_000;
    const { url } = listen({ maxEventBytes: budget, maxPeerEventBytes: 131_072, maxQueue: 256, registerRatePerMin: 0, messageRatePerS: 0, peerMessageRatePerS: 0 });
    await post(`${url}/register/s/sender`);
    for (let p = 0; p < 5; p++) await post(`${url}/register/s/p${p}`);
    const payload = 'x'.repeat(60_000);
    const statuses: number[] = [];
    for (let p = 0; p < 5; p++) statuses.push((await post(`${url}/message/s/sender`, { type: 'blob', target: `p${p}`, payload })).status);
    expect(statuses).toEqual([202, 202, 202, 429, 429]);
    const held = (await scrape(url)).value('switchboard_event_bytes');
    expect(held).toBeGreaterThan(3 * 60_000);
    expect(held).toBeLessThanOrEqual(budget);
  });
});
