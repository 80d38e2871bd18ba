// What one cross-instance message costs Redis, by Redis's own accounting: POST /message on instance A
// to peers whose streams instance B holds, INFO cpu and INFO commandstats before and after. Twice: with
// the targets' resume windows still filling, and once they are full (MAX_PEER_EVENT_BYTES reached, so
// that every append also drops kept events). Redis runs on CPU 1, the instances and this process on
// CPU 0, when there is taskset. Bounded: about half a minute.
// Usage: bun bench/redis-send.ts [rounds, default 3]
import { RedisClient } from 'bun';
import { RedisServer } from '../test/cluster/redis-server';
import { type ServerProcess, spawnServer } from '../test/process-helpers';
import { redisCpuSeconds } from './cluster';
import { LIMITS_OFF } from './limits-off';
import { median } from './stats';

const root = new URL('..', import.meta.url).pathname;
const PAIRS = 20;
/** Per target: events kept for resume past this many bytes are dropped, oldest first. */
const PEER_BYTES = 131_072;
/** Messages per pair and phase: 100 fill about a quarter of a window, 1,000 fill it several times over. */
const PHASES = [
  { name: 'window filling', perPair: 100 },
  { name: 'window full', perPair: 1_000 },
] as const;
const IN_FLIGHT = 4;
const BODY = JSON.stringify({
  target: 'receiver',
  type: 'ice-candidate',
  payload: { candidate: 'candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 192.168.1.2 rport 46154 generation 0 ufrag sWxv network-cost 999', sdpMid: '0' },
});

interface Figures {
  cpuUs: number;
  fcallUs: number;
  innerUs: number;
  commands: number;
}

const pinned = Bun.which('taskset') !== null;
if (pinned && !process.env.REDIS_SEND_PINNED) {
  // Everything but Redis on CPU 0: this process, and through it the instances it spawns.
  const child = Bun.spawn(['taskset', '-c', '0', process.execPath, ...process.argv.slice(1)], {
    env: { ...process.env, REDIS_SEND_PINNED: '1' },
    stdio: ['inherit', 'inherit', 'inherit'],
  });
  process.exit(await child.exited);
}

const commandStats = (info: string): Map<string, { calls: number; usec: number }> => {
  const out = new Map<string, { calls: number; usec: number }>();
  for (const m of info.matchAll(/^cmdstat_([\w|]+):calls=(\d+),usec=(\d+)/gm)) out.set(m[1] as string, { calls: Number(m[2]), usec: Number(m[3]) });
  return out;
};

async function phase(redis: RedisClient, a: ServerProcess, session: (i: number) => string, perPair: number, delivered: () => number): Promise<Figures> {
  const cpu = () => redisCpuSeconds(redis);
  await redis.send('CONFIG', ['RESETSTAT']);
  const [cpu0, delivered0] = [await cpu(), delivered()];
  await Promise.all(
    Array.from({ length: PAIRS * IN_FLIGHT }, async (_, k) => {
      const i = k % PAIRS;
      for (let n = 0; n < perPair / IN_FLIGHT; n++) {
        const res = await fetch(`${a.url}/message/${session(i)}/sender`, { method: 'POST', body: BODY });
        await res.arrayBuffer();
        if (res.status >= 300) throw new Error(`message: ${res.status}`);
      }
    }),
  );
  const messages = PAIRS * perPair;
  const deadline = Date.now() + 10_000;
  while (delivered() - delivered0 < messages && Date.now() < deadline) await Bun.sleep(5);
  await Bun.sleep(100);
  const cpuUs = (((await cpu()) - cpu0) * 1e6) / messages;
  const stats = commandStats((await redis.send('INFO', ['commandstats'])) as string);
  let fcallUs = 0;
  let innerUs = 0;
  let commands = 0;
  for (const [name, { calls, usec }] of stats) {
    if (name === 'info' || name.startsWith('config')) continue;
    commands += calls;
    if (name === 'fcall' || name === 'evalsha') fcallUs += usec;
    else innerUs += usec;
  }
  return { cpuUs, fcallUs: fcallUs / messages, innerUs: innerUs / messages, commands: commands / messages };
}

async function round(redis: RedisServer, stats: RedisClient, index: number): Promise<Figures[]> {
  const env = { ...LIMITS_OFF, MAX_QUEUE: '4096', MAX_PEER_EVENT_BYTES: String(PEER_BYTES), REDIS_URL: redis.url, REDIS_PREFIX: `send-${index}` };
  const [a, b] = [await spawnServer([process.execPath, 'src/index.ts'], { cwd: root, env }), await spawnServer([process.execPath, 'src/index.ts'], { cwd: root, env })];
  const abort = new AbortController();
  let delivered = 0;
  try {
    const session = (i: number) => `s${index}-${i}`;
    const readers: Promise<void>[] = [];
    for (let i = 0; i < PAIRS; i++) {
      for (const peer of ['sender', 'receiver']) await (await fetch(`${a.url}/register/${session(i)}/${peer}`, { method: 'POST' })).arrayBuffer();
      const res = await fetch(`${b.url}/events/${session(i)}/receiver`, { signal: abort.signal });
      readers.push(
        (async () => {
          const decoder = new TextDecoder();
          try {
            for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) delivered += decoder.decode(chunk).split('"ice-candidate"').length - 1;
          } catch {
            // Aborted at the end.
          }
        })(),
      );
    }
    const figures: Figures[] = [];
    for (const p of PHASES) figures.push(await phase(stats, a, session, p.perPair, () => delivered));
    abort.abort();
    await Promise.all(readers);
    return figures;
  } finally {
    abort.abort();
    await Promise.all([a.stop(), b.stop()]);
  }
}

const rounds = Number(process.argv[2] ?? 3);
const redis = await RedisServer.start();
const stats = new RedisClient(redis.url);
try {
  const pid = /process_id:(\d+)/.exec((await stats.send('INFO', ['server'])) as string)?.[1];
  if (pinned && pid) Bun.spawnSync(['taskset', '-pc', '1', pid]);
  const all: Figures[][] = [];
  for (let r = 0; r < rounds; r++) all.push(await round(redis, stats, r));
  console.log(
    `${PAIRS} pairs, ${IN_FLIGHT} POSTs in flight per pair, MAX_PEER_EVENT_BYTES=${PEER_BYTES}; Redis ${pinned ? 'alone on CPU 1' : 'unpinned'}; ${rounds} rounds, medians`,
  );
  console.log('phase            Redis CPU µs/msg  script µs/msg  (its commands)  commands/msg');
  PHASES.forEach((p, i) => {
    const m = (pick: (f: Figures) => number) => median(all.map((figures) => pick(figures[i] as Figures)));
    console.log(
      `${p.name.padEnd(16)} ${m((f) => f.cpuUs)
        .toFixed(1)
        .padStart(16)}  ${m((f) => f.fcallUs)
        .toFixed(1)
        .padStart(13)}  ${m((f) => f.innerUs)
        .toFixed(1)
        .padStart(14)}  ${m((f) => f.commands)
        .toFixed(1)
        .padStart(12)}   (CPU by round: ${all.map((f) => (f[i] as Figures).cpuUs.toFixed(1)).join(' ')})`,
    );
  });
} finally {
  stats.close();
  await redis.dispose();
}
