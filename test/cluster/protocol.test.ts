import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { RedisClient } from 'bun';
import { decodeFrame, decodeOwnState, encodeFrame, type Frame, peerAddress, peerIdOf } from '../../src/cluster/protocol';
import { startServer } from '../helpers';
import { type Cluster, call, startCluster } from './helpers';
import { RedisServer } from './redis-server';

/** Every character an id may hold (see the PeerParams pattern). */
const EVERY_ID_CHAR = 'AZaz09._:@|~-';

describe('cluster protocol: channel frames', () => {
  test('every frame reads back as it was written, whatever the ids hold', () => {
    const address = peerAddress(`s${EVERY_ID_CHAR}`, `p${EVERY_ID_CHAR}`);
    const frames: Frame[] = [
      { kind: 'event', address, id: 7, stamp: 1_700_000_000_123, members: '"type":"offer","payload":{"sdp":"v=0\\r\\n"},"senderId":"x"}' },
      { kind: 'event', address, id: 1, stamp: -1, members: '"type":"new-peer","senderId":"y"}' },
      { kind: 'close', address, gen: 3, finalId: undefined, members: '' },
      { kind: 'close', address, gen: 0, finalId: 12, members: '"type":"session-closed"}' },
      { kind: 'cut', address },
      { kind: 'relay', op: 'own', sessionId: `s${EVERY_ID_CHAR}`, token: 42, peerId: '', json: '{"why":"failover","peers":[]}' },
      { kind: 'relay', op: 'joined', sessionId: 's', token: 1, peerId: `p${EVERY_ID_CHAR}`, json: 'publisher' },
      { kind: 'relay', op: 'message', sessionId: 's', token: 9, peerId: 'v', json: '{"type":"answer","payload":{"sdp":"v=0\r\na=x\r\n"}}' },
      { kind: 'relay', op: 'closed', sessionId: 's', token: 9, peerId: '', json: '' },
    ];
    for (const frame of frames) expect(decodeFrame(encodeFrame(frame))).toEqual(frame);
    expect(peerIdOf(address)).toBe(`p${EVERY_ID_CHAR}`);
  });

  test('a frame this version does not know is no frame', () => {
    expect(decodeFrame('z\ns/p\n1\n2\n{}')).toBeUndefined();
    expect(decodeFrame('e')).toBeUndefined();
    expect(decodeFrame('e\ns/p\n1')).toBeUndefined();
    // A relay frame of an op this version does not know, without a token, or cut short.
    expect(decodeFrame('r\nmove\ns\n1\np\n')).toBeUndefined();
    expect(decodeFrame('r\nown\ns\nx\n\n{}')).toBeUndefined();
    expect(decodeFrame('r\nown\n\n1\n\n{}')).toBeUndefined();
    expect(decodeFrame('r\nleft\ns\n1')).toBeUndefined();
  });

  test("an own frame's state is read with a check of every field", () => {
    expect(decodeOwnState('{"why":"handover","peers":[{"id":"cam","role":"publisher","streaming":true},{"id":"v","role":"viewer","streaming":false}]}')).toEqual({
      why: 'handover',
      peers: [
        { id: 'cam', role: 'publisher', streaming: true },
        { id: 'v', role: 'viewer', streaming: false },
      ],
    });
    for (const bad of [
      '',
      'null',
      '[]',
      '{"why":"whim","peers":[]}',
      '{"why":"placed"}',
      '{"why":"placed","peers":[{"id":1,"role":"viewer"}]}',
      '{"why":"placed","peers":[{"id":"v","role":"admin"}]}',
    ]) {
      expect(decodeOwnState(bad)).toBeUndefined();
    }
  });
});

describe('cluster protocol: POST /message', () => {
  let redis: RedisServer;
  let admin: RedisClient;
  let cluster: Cluster;
  beforeAll(async () => {
    redis = await RedisServer.start();
    admin = new RedisClient(redis.url, { autoReconnect: false });
    // Without relay sessions: the relay's lease renewals would be scripts of their own as the clock moves.
    cluster = await startCluster(redis.url, 2, { authMode: 'token', peerMessageRatePerS: 1, peerMessageBurst: 1, relayMode: 'off' });
  });
  afterAll(async () => {
    await cluster.stop();
    admin.close();
    await redis.dispose();
  });

  /** The scripts Redis has run since the last call, from its command statistics. */
  async function scriptsRun(): Promise<number> {
    const info = (await admin.send('INFO', ['commandstats'])) as string;
    await admin.send('CONFIG', ['RESETSTAT']);
    let calls = 0;
    for (const match of info.matchAll(/^cmdstat_(?:evalsha|eval|fcall):calls=(\d+)/gm)) calls += Number(match[1]);
    return calls;
  }

  test('the sender is checked in the same Redis step as the message: one script, and the refusals in the order of one process', async () => {
    const [a, b] = cluster.instances;
    if (!a || !b) throw new Error('two instances');
    const x = await call(a.url, 'POST', '/register/s/x');
    await call(b.url, 'POST', '/register/s/y');
    const auth = (token: string) => ({ authorization: `Bearer ${token}` });
    const message = { target: 'y', type: 'offer', payload: { sdp: 'v=0' } };

    await scriptsRun();
    const sent = await call(b.url, 'POST', '/message/s/x', message, auth(x.body.token));
    expect(sent.status).toBe(202);
    expect(await scriptsRun()).toBe(1);

    // Not found comes first (404), then no token (401), then someone else's (403): as in one process.
    cluster.clock.advance(1000);
    expect((await call(b.url, 'POST', '/message/s/nobody', message, auth(x.body.token))).body.error).toBe('peer_not_found');
    expect((await call(b.url, 'POST', '/message/nosession/x', message, auth(x.body.token))).body.error).toBe('session_not_found');
    const anonymous = await call(b.url, 'POST', '/message/s/x', message);
    expect([anonymous.status, anonymous.body.error, anonymous.headers.get('www-authenticate')]).toEqual([401, 'unauthorized', 'Bearer realm="switchboard"']);
    const wrong = await call(b.url, 'POST', '/message/s/x', message, auth('not-the-token'));
    expect([wrong.status, wrong.body.error]).toEqual([403, 'forbidden']);
    expect(await scriptsRun()).toBe(4);

    // The refused requests took nothing of x's own rate (a burst of 1, back after a second): x's next
    // message goes, the one after is refused for its rate, and a request without the token is still a 401.
    expect((await call(b.url, 'POST', '/message/s/x', message, auth(x.body.token))).status).toBe(202);
    const limited = await call(b.url, 'POST', '/message/s/x', message, auth(x.body.token));
    expect([limited.status, limited.body.error]).toEqual([429, 'rate_limited']);
    expect((await call(b.url, 'POST', '/message/s/x', message)).status).toBe(401);
    expect(await scriptsRun()).toBe(3);
  });

  test('a batch is one script, however many messages it holds, and one when its sender is refused', async () => {
    const [a, b] = cluster.instances;
    if (!a || !b) throw new Error('two instances');
    const p = await call(a.url, 'POST', '/register/batch/p');
    await call(b.url, 'POST', '/register/batch/q');
    const auth = { authorization: `Bearer ${p.body.token}` };
    const candidates = Array.from({ length: 32 }, (_, n) => ({ type: 'ice-candidate', payload: { candidate: `candidate:${n}` }, target: 'q' }));
    cluster.clock.advance(1000);
    await scriptsRun();
    const sent = await call(b.url, 'POST', '/message/batch/p', candidates, auth);
    expect(sent.status).toBe(200);
    // The rate (a burst of 1) let the first through; the 31 others were refused before Redis, in the same script.
    expect(sent.body.results.map((r: { status: number }) => r.status)).toEqual([202, ...Array.from({ length: 31 }, () => 429)]);
    expect(await scriptsRun()).toBe(1);
    expect((await call(b.url, 'POST', '/message/batch/p', candidates)).status).toBe(401);
    expect(await scriptsRun()).toBe(1);
  });
});

describe('admission: one order of checks on both stores', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await RedisServer.start();
  });
  afterAll(async () => {
    await redis.dispose();
  });

  const config = { authMode: 'token', maxPeersPerIp: 1, trustProxy: 1 } as const;
  const from = (ip: string) => ({ 'x-forwarded-for': ip });

  /** Takes over y without its token from an address at its cap: the cap (429) answers before the credentials (401). */
  async function capBeforeCredentials(a: string, b: string): Promise<void> {
    expect((await call(a, 'POST', '/register/s/x', undefined, from('10.0.0.1'))).status).toBe(200);
    expect((await call(b, 'POST', '/register/s/y', undefined, from('10.0.0.2'))).status).toBe(200);
    const both = await call(b, 'POST', '/register/s/y', undefined, from('10.0.0.1'));
    expect([both.status, both.body.error]).toEqual([429, 'too_many_peers']);
    // Without the cap in the way, the credentials refuse it.
    const credentials = await call(a, 'POST', '/register/s/y', undefined, from('10.0.0.3'));
    expect([credentials.status, credentials.body.error]).toEqual([401, 'unauthorized']);
  }

  test('one process', async () => {
    const server = startServer(config);
    try {
      await capBeforeCredentials(server.url, server.url);
    } finally {
      await server.stop();
    }
  });

  test('a cluster, the requests spread over two instances', async () => {
    const cluster = await startCluster(redis.url, 2, config);
    try {
      const [a, b] = cluster.instances;
      if (!a || !b) throw new Error('two instances');
      await capBeforeCredentials(a.url, b.url);
    } finally {
      await cluster.stop();
    }
  });
});
