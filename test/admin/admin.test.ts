// The admin API without ADMIN_TOKEN; with it, the admin scenarios run on both stores in test/contract/access.test.ts.
import { describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import { defaultConfig, req } from '../helpers';

const ADMIN = 'admin-token-for-tests-0123';
const admin = { authorization: `Bearer ${ADMIN}` };

describe('without ADMIN_TOKEN', () => {
  test.each([
    ['POST', '/sessions'],
    ['GET', '/sessions'],
    ['GET', '/sessions/s'],
  ])('%s %s answers 403 admin_disabled, saying how to enable it', async (method, path) => {
    const res = await req(createApp(defaultConfig()).app, method, path, method === 'POST' ? {} : undefined, admin);
    expect(res.status).toBe(403);
    expect(res.body).toEqual({ error: 'admin_disabled', message: expect.stringContaining('ADMIN_TOKEN') });
  });
});
