import { describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import { CHECK_TIMEOUT_MS, Readiness } from '../../src/health/readiness';
import { defaultConfig, ManualClock, req } from '../helpers';

describe('GET /healthz', () => {
  test('is alive', async () => {
    const res = await req(createApp(defaultConfig()).app, 'GET', '/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
  });
});

describe('GET /readyz', () => {
  test('ready, with no backend configured', async () => {
    const res = await req(createApp(defaultConfig()).app, 'GET', '/readyz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ready', checks: {} });
  });

  test('a backend registers its check; while it fails, 503 not_ready', async () => {
    const { app, readiness } = createApp(defaultConfig());
    let reachable = true;
    readiness.register('redis', () => reachable);
    expect((await req(app, 'GET', '/readyz')).body).toEqual({ status: 'ready', checks: { redis: 'ok' } });
    reachable = false;
    const res = await req(app, 'GET', '/readyz');
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ status: 'not_ready', checks: { redis: 'failing' } });
    reachable = true;
    expect((await req(app, 'GET', '/readyz')).status).toBe(200);
  });

  test('503 draining once the server drains', async () => {
    const { app, readiness } = createApp(defaultConfig());
    readiness.drain();
    const res = await req(app, 'GET', '/readyz');
    expect(res.status).toBe(503);
    expect(res.body.status).toBe('draining');
  });
});

describe('Readiness', () => {
  test('a check that throws, rejects or answers false is failing; async ones are awaited', async () => {
    const readiness = new Readiness(new ManualClock());
    readiness.register('throws', () => {
      throw new Error('down');
    });
    readiness.register('rejects', () => Promise.reject(new Error('down')));
    readiness.register('false', () => false);
    readiness.register('async-ok', async () => true);
    expect(await readiness.report()).toEqual({
      status: 'not_ready',
      checks: { throws: 'failing', rejects: 'failing', false: 'failing', 'async-ok': 'ok' },
    });
  });

  test('a check that does not answer in time is failing', async () => {
    const clock = new ManualClock();
    const readiness = new Readiness(clock);
    readiness.register('hangs', () => new Promise<boolean>(() => {}));
    const report = readiness.report();
    clock.advance(CHECK_TIMEOUT_MS);
    expect(await report).toEqual({ status: 'not_ready', checks: { hangs: 'failing' } });
  });

  test('registering a name again replaces its check', async () => {
    const readiness = new Readiness(new ManualClock());
    readiness.register('redis', () => false);
    readiness.register('redis', () => true);
    expect((await readiness.report()).status).toBe('ready');
  });
});
