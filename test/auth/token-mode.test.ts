// Token mode's in-process details; who may do what runs on both stores in test/contract/access.test.ts.
import { describe, expect, spyOn, test } from 'bun:test';
import { createApp } from '../../src/app';
import { createLogger } from '../../src/log/logger';
import { defaultConfig, req } from '../helpers';

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const offer = (target: string) => ({ type: 'offer', payload: { sdp: 'v=0' }, target });

describe('tokens never reach a log line', () => {
  test('a whole token-mode flow, refusals and an internal error included, logs no token', async () => {
    const lines: string[] = [];
    const capture = (...args: unknown[]) => void lines.push(args.map(String).join(' '));
    const spies = [spyOn(console, 'log').mockImplementation(capture), spyOn(console, 'error').mockImplementation(capture), spyOn(console, 'warn').mockImplementation(capture)];
    try {
      const issued: string[] = [];
      const { app, signalling } = createApp(defaultConfig({ authMode: 'token' }), {
        newToken: () => {
          const token = `secret-token-${issued.length}-${crypto.randomUUID()}`;
          issued.push(token);
          return token;
        },
        // Every level: a token must not reach even a debug line.
        logger: createLogger({ level: 'debug', format: 'json', clock: { now: Date.now }, write: capture }),
      });
      const a = (await req(app, 'POST', '/register/s/a')).body.token as string;
      const b = (await req(app, 'POST', '/register/s/b')).body.token as string;
      await req(app, 'POST', '/message/s/a', offer('b'), bearer(b));
      await req(app, 'GET', `/events/s/a?token=${b}`);
      await req(app, 'POST', '/register/s/a', undefined, bearer(b));
      await req(app, 'POST', '/message/s/a', '{"type":', bearer(a));
      // Force the one path that logs a request: an unexpected error.
      (signalling as unknown as { send: () => never }).send = () => {
        throw new Error('boom');
      };
      expect((await req(app, 'POST', `/message/s/a?token=${a}`, offer('b'), bearer(a))).status).toBe(500);
      expect(lines.some((l) => l.includes('internal error'))).toBe(true);
      for (const token of issued) expect(lines.join('\n')).not.toContain(token);
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });
});
