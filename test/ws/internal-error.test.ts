// A bug on a WebSocket connection is reported through the app's logger (which redacts credentials),
// never straight to the console, and the connection and the server go on.
import { afterEach, expect, spyOn, test } from 'bun:test';
import { createLogger } from '../../src/log/logger';
import { ManualClock, post, type Running, startServer } from '../helpers';
import { openSocket, type WsConnection } from '../ws-client';

let running: Running | undefined;
let socket: WsConnection | undefined;
afterEach(async () => {
  socket?.close();
  await running?.stop();
});

test('a frame the backend fails on: a 500 ack, one error line in the log naming the peer, nothing on the console', async () => {
  const lines: Record<string, unknown>[] = [];
  const clock = new ManualClock();
  const logger = createLogger({ level: 'info', format: 'json', clock, write: (line) => lines.push(JSON.parse(line)) });
  running = startServer({}, { clock, logger });
  const { url, signalling } = running;
  expect((await post(`${url}/register/s/a`)).status).toBe(200);
  const token = (await post(`${url}/register/s/b`)).body.token as string;
  socket = await openSocket(`${url}/ws/s/b?token=${token}`);

  const consoleError = spyOn(console, 'error');
  const send = signalling.send.bind(signalling);
  let consoleLines = 0;
  signalling.send = () => {
    throw new Error('a bug in the backend');
  };
  try {
    const ack = await socket.request({ target: 'a', type: 'offer', payload: { sdp: 'v=0' } });
    expect(ack).toMatchObject({ status: 500, error: 'internal_error' });
  } finally {
    signalling.send = send;
    consoleLines = consoleError.mock.calls.length;
    consoleError.mockRestore();
  }
  expect(consoleLines).toBe(0);
  const failures = lines.filter((l) => l.level === 'error');
  expect(failures).toHaveLength(1);
  expect(failures[0]).toMatchObject({
    msg: 'internal error',
    component: 'ws',
    transport: 'ws',
    stage: 'message',
    sessionId: 's',
    peerId: 'b',
    error: { message: 'a bug in the backend' },
  });
  // The connection goes on.
  expect(await socket.request({ target: 'a', type: 'offer', payload: { sdp: 'v=0' } })).toMatchObject({ status: 202 });
});
