// TURN for real: coturn on 127.0.0.1 checks the credentials the server issues with TURN_SECRET (in the
// registration's answer, as GET /iceServers does), and Chromium relays media through it when the page
// is told to use nothing else (relay=1).
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { type ServerProcess, spawnServer } from '../process-helpers';
import { browserTests, explainOnFailure, publish, status, waitConnected, waitVideo } from './browser';
import { type Coturn, startCoturn } from './coturn';

const root = new URL('../..', import.meta.url).pathname;
const { open, stopAfter } = browserTests();
let turn: Coturn;
beforeAll(async () => {
  turn = await startCoturn();
}, 60_000);
afterAll(async () => {
  await turn?.stop();
});

/** The server as an operator starts it: settings in the environment. */
async function serve(secret: string): Promise<ServerProcess> {
  return stopAfter(await spawnServer([process.execPath, 'src/index.ts'], { cwd: root, env: { TURN_SECRET: secret, ICE_URLS: turn.url, TURN_TTL_S: '600' } }));
}

describe('TURN through coturn', () => {
  test('with relay=1 the viewer connects through coturn: the selected pair is relay on both ends', async () => {
    const { url } = await serve(turn.secret);
    const publisher = await publish(await open(`${url}/?session=turn&peer=pub&role=publish&relay=1`));
    const viewer = await open(`${url}/?session=turn&peer=v1&role=view&relay=1`);

    await waitConnected(viewer.page, 'pub');
    await waitVideo(viewer.page, 'pub');
    // The pair is read from getStats once a second.
    await viewer.page.waitForFunction(() => window.switchboard.peers.pub?.pair !== undefined);
    await publisher.page.waitForFunction(() => window.switchboard.peers.v1?.pair !== undefined);
    const viewerPair = (await status(viewer.page)).peers.pub?.pair;
    const publisherPair = (await status(publisher.page)).peers.v1?.pair;
    expect(viewerPair).toMatchObject({ local: 'relay', remote: 'relay' });
    expect(publisherPair).toMatchObject({ local: 'relay', remote: 'relay' });
    // Both relayed addresses are coturn's, on this machine.
    expect(viewerPair?.localAddress).toStartWith('127.0.0.1:');
    expect(viewerPair?.remoteAddress).toStartWith('127.0.0.1:');
    // coturn saw both peers allocate with the names their registrations' answers put in their credentials.
    expect(turn.log()).toMatch(/user <\d+:pub>: incoming packet ALLOCATE processed, success/);
    expect(turn.log()).toMatch(/user <\d+:v1>: incoming packet ALLOCATE processed, success/);
  }, 60_000);

  test('with a wrong TURN_SECRET the browser reports a 401 and gathers no relay candidate', async () => {
    const { url } = await serve(`not-${turn.secret}`);
    await publish(await open(`${url}/?session=wrong&peer=pub&role=publish&relay=1`));
    const viewer = await open(`${url}/?session=wrong&peer=v1&role=view&relay=1`);

    // The viewer's connection exists once the offer arrives; then its gathering ends on coturn's refusal.
    await viewer.page.waitForFunction(
      () => {
        const pub = window.switchboard.peers.pub;
        return pub !== undefined && pub.iceGatheringState === 'complete' && pub.candidateErrors.some((e) => e.errorCode === 401);
      },
      undefined,
      { timeout: 30_000, polling: 100 },
    );
    const seen = (await status(viewer.page)).peers.pub;
    expect(seen?.candidateErrors).toContainEqual({ url: turn.url, errorCode: 401, errorText: expect.stringMatching(/unauthori[sz]ed/i) });
    expect(seen?.localCandidates.relay).toBe(0);
    expect(Object.values(seen?.localCandidates ?? {}).reduce((a, b) => a + b, 0)).toBe(0);
  }, 60_000);
});

describe('ICE restart', () => {
  test('the TURN server dies and comes back: the connection recovers by an ICE restart, without registering again', async () => {
    const { url } = await serve(turn.secret);
    const publisher = await publish(await open(`${url}/?session=restart&peer=pub&role=publish&relay=1`));
    const viewer = await open(`${url}/?session=restart&peer=v1&role=view&relay=1`);
    await waitConnected(viewer.page, 'pub');
    await waitVideo(viewer.page, 'pub');

    // Every allocation is lost with the process; a new one answers on the same port with the same secret.
    await turn.stop('SIGKILL');
    turn = await startCoturn(turn);
    await publisher.page.waitForFunction(() => (window.switchboard.peers.v1?.iceRestarts ?? 0) >= 1, undefined, { timeout: 30_000, polling: 100 });
    // The viewer has the restart's offer: from here a 'connected' is the restarted connection's.
    await viewer.page.waitForFunction(() => (window.switchboard.peers.pub?.offersReceived ?? 0) >= 2, undefined, { timeout: 30_000, polling: 100 });
    await waitConnected(viewer.page, 'pub');
    const before = (await status(viewer.page)).peers.pub?.framesDecoded ?? 0;
    await explainOnFailure({ viewer, publisher }, () =>
      viewer.page.waitForFunction((n) => (window.switchboard.peers.pub?.framesDecoded ?? 0) > n, before, { timeout: 30_000, polling: 100 }),
    );

    const seen = await status(viewer.page);
    expect(seen.reRegistrations).toBe(0);
    // The same connection: one initial offer and the restart offers, all on one RTCPeerConnection.
    expect(seen.peers.pub?.offersReceived).toBeGreaterThanOrEqual(2);
    expect(seen.peers.pub?.pair).toMatchObject({ local: 'relay', remote: 'relay' });
    expect(turn.log()).toMatch(/ALLOCATE processed, success/);
  }, 120_000);
});
