import { afterAll, beforeAll, test } from 'bun:test';
import { browserTests, publish, waitVideo } from '../e2e/browser';
import type { ServerProcess } from '../process-helpers';
import { RedisServer } from './redis-server';
import { createRelaySession, killAll, ownerAmong, spawnInstances } from './relay-instances';

const { open, stopAfter } = browserTests();
let redis: RedisServer;
beforeAll(async () => { redis = await RedisServer.start(); });
afterAll(async () => { await redis.dispose(); });

test('dtls', async () => {
  const instances = await spawnInstances(redis.url, 3, { RELAY_VIDEO_CODECS: 'h264,vp8', RELAY_LEASE_MS: '3000', DEBUG: 'werift*' });
  stopAfter({ stop: () => killAll(instances) });
  await createRelaySession(instances[0] as ServerProcess, 'cam');
  const owner = await ownerAmong(instances);
  const [x] = instances.filter((p) => p !== owner) as [ServerProcess];
  await publish(await open(`${x.url}/?session=cam&peer=pub&role=publish&mode=relay`));
  const v = await open(`${x.url}/?session=cam&peer=v1&role=view`);
  await waitVideo(v.page, 'switchboard');
  owner.proc.kill('SIGKILL');
  await Bun.sleep(8000);
  for (const [i, p] of instances.entries()) console.log(`---- ${i}\n` + p.output().split('\n').filter((l) => /StateChange|"msg":"relay|dtls|Dtls/.test(l)).slice(0, 80).join('\n'));
}, 60_000);
