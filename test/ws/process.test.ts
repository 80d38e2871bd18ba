import { expect, test } from 'bun:test';
import { join } from 'node:path';
import { spawnServer } from '../process-helpers';
import { isType, openSocket } from '../ws-client';

const entry = join(import.meta.dir, '..', '..', 'src', 'index.ts');

test('bun src/index.ts serves /ws on its one port, and on SIGTERM closes sockets and exits 0', async () => {
  const server = await spawnServer([process.execPath, entry]);
  await fetch(`${server.url}/register/s/a`, { method: 'POST' });
  const socket = await openSocket(`${server.url}/ws/s/a`);
  await socket.next(isType('ping'));
  expect(await server.stop('SIGTERM')).toBe(0);
  expect((await socket.closed).code).toBe(1000);
});
