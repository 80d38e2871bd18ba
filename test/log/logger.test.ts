import { describe, expect, test } from 'bun:test';
import { createLogger, type LogLevel, REDACTED } from '../../src/log/logger';
import { ManualClock } from '../helpers';

const capture = (level: LogLevel = 'debug', format: 'json' | 'pretty' = 'json') => {
  const lines: string[] = [];
  const logger = createLogger({ level, format, clock: new ManualClock(Date.UTC(2026, 0, 2, 3, 4, 5, 6)), write: (line) => lines.push(line) });
  return { logger, lines };
};

describe('createLogger', () => {
  test('writes one JSON object per line: time, level, message, then the fields', () => {
    const { logger, lines } = capture();
    logger.info('peer timed out', { sessionId: 's1', peerId: 'p1', afterMs: 15000 });
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toEqual({ time: '2026-01-02T03:04:05.006Z', level: 'info', msg: 'peer timed out', sessionId: 's1', peerId: 'p1', afterMs: 15000 });
  });

  test('drops what is below its level, and says so through enabled()', () => {
    const { logger, lines } = capture('warn');
    logger.debug('a');
    logger.info('b');
    logger.warn('c');
    logger.error('d');
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['c', 'd']);
    expect([logger.enabled('info'), logger.enabled('warn')]).toEqual([false, true]);
  });

  test('a child adds its fields to every line', () => {
    const { logger, lines } = capture();
    logger.child({ requestId: 'r1' }).info('x', { peerId: 'p' });
    expect(JSON.parse(lines[0] as string)).toMatchObject({ requestId: 'r1', peerId: 'p' });
  });

  test('never writes credentials or what peers send, whatever the field is called or how deep it is', () => {
    const { logger, lines } = capture();
    logger.info('careless', {
      authorization: 'Bearer abc',
      token: 'abc',
      metricsToken: 'abc',
      turnSecret: 'abc',
      credential: 'abc',
      nested: { password: 'abc', payload: { sdp: 'v=0 abc' } },
      body: 'abc',
    });
    expect(lines[0]).not.toContain('abc');
    expect(JSON.parse(lines[0] as string)).toMatchObject({ authorization: REDACTED, nested: { password: REDACTED, payload: REDACTED } });
  });

  test('errors are written with their message and stack', () => {
    const { logger, lines } = capture();
    logger.error('internal error', { error: new TypeError('boom') });
    const { error } = JSON.parse(lines[0] as string);
    expect(error).toMatchObject({ name: 'TypeError', message: 'boom' });
    expect(error.stack).toContain('logger.test.ts');
  });

  test('pretty: one readable line, values quoted only when they need it, secrets redacted too', () => {
    const { logger, lines } = capture('debug', 'pretty');
    logger.warn('slow reader cut', { peerId: 'p1', reason: 'the reader stalled', token: 'abc' });
    expect(lines[0]).toBe(`2026-01-02T03:04:05.006Z WARN  slow reader cut peerId=p1 reason="the reader stalled" token=${REDACTED}`);
  });
});
