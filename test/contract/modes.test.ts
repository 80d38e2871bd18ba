// Session modes, roles and the reserved peer id as the signalling API shows them, on one process and on a
// cluster. The server's offers and media: test/relay/ (one process), test/cluster/relay*.test.ts (a cluster).
import { expect, test } from 'bun:test';
import { contractBackends, eachBackend } from './backends';

const backends = contractBackends();
const ADMIN = 'a'.repeat(16);
const admin = { authorization: `Bearer ${ADMIN}` };

eachBackend(backends, (backend) => {
  test('relay sessions: registering and the admin API open them, on any instance; the others see only the publisher', async () => {
    const s = await backend.start({ adminToken: ADMIN });
    const first = await s.register('r', 'dev', { query: 'mode=relay' });
    const created = await s.admin('POST', '/sessions', { sessionId: 'cam', mode: 'relay' }, admin, 1);
    expect(first.body).toMatchObject({ mode: 'relay', role: 'publisher', peers: [] });
    expect((await s.register('r', 'v1')).body).toMatchObject({ mode: 'relay', role: 'viewer', peers: ['dev'] });
    // Nobody learns of a viewer: v2 sees the publisher only.
    expect((await s.register('r', 'v2')).body).toMatchObject({ mode: 'relay', role: 'viewer', peers: ['dev'] });
    expect(created.status).toBe(201);
    expect(created.body.mode).toBe('relay');
    const listed = (await s.call('GET', '/sessions', undefined, admin, 2)).body.sessions as { sessionId: string; mode: string }[];
    expect(listed.map(({ sessionId, mode }) => ({ sessionId, mode }))).toEqual([
      { sessionId: 'r', mode: 'relay' },
      { sessionId: 'cam', mode: 'relay' },
    ]);
  });

  test('a mesh session refuses to be joined as a relay session', async () => {
    const s = await backend.start();
    expect((await s.register('m', 'p')).body.mode).toBe('mesh');
    expect((await s.register('m', 'q', { query: 'mode=mesh' })).body.mode).toBe('mesh');
    // The session's own mode is checked first, on both stores.
    const relay = await s.register('m', 'r', { query: 'mode=relay' });
    expect(relay).toMatchObject({ status: 409, body: { error: 'mode_conflict', message: 'session m is a mesh session; it cannot be joined with mode=relay' } });
  });

  test('a mode or role that is not one of the names is a 400 naming the field', async () => {
    const s = await backend.start({ adminToken: ADMIN });
    for (const query of ['mode=sfu', 'role=publisher']) {
      const res = await s.register('s', 'p', { query });
      expect(res.status).toBe(400);
      expect(res.body.message).toContain(query.split('=')[0]);
    }
    expect((await s.admin('POST', '/sessions', { mode: 'sfu' }, admin)).status).toBe(400);
  });

  test('switchboard cannot register, in a session of either mode, nor be invited', async () => {
    const s = await backend.start({ adminToken: ADMIN });
    await s.register('mesh', 'a');
    for (const [session, query] of [
      ['mesh', undefined],
      ['new', undefined],
      ['new', 'mode=relay'],
    ] as const) {
      const res = await s.register(session, 'switchboard', { query });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('reserved_peer');
    }
    expect((await s.call('GET', '/register/new/x')).status).toBe(404);
    const invite = await s.admin('POST', '/sessions', { peers: [{ peerId: 'switchboard', role: 'viewer' }] }, admin, 2);
    expect(invite.status).toBe(400);
    expect(invite.body.error).toBe('reserved_peer');
  });

  test('in a mesh session switchboard is no target', async () => {
    const s = await backend.start();
    await s.register('m', 'a');
    const res = await s.message('m', 'a', { type: 'answer', payload: { type: 'answer', sdp: 'v=0\r\n' }, target: 'switchboard' });
    expect(res.status).toBe(404);
    expect(res.body.error).toBe('target_not_found');
  });

  test('open mode: ?role= decides; without it the first in publishes', async () => {
    const s = await backend.start();
    expect((await s.register('s', 'watcher', { query: 'role=view' })).body.role).toBe('viewer');
    expect((await s.register('s', 'cam', { query: 'role=publish' })).body.role).toBe('publisher');
    expect((await s.register('t', 'first')).body.role).toBe('publisher');
    expect((await s.register('t', 'second')).body.role).toBe('viewer');
  });

  test('token mode: publishing may be asked for while the session has no publisher', async () => {
    const s = await backend.start({ authMode: 'token' });
    expect((await s.register('s', 'v1', { query: 'role=view' })).body.role).toBe('viewer');
    expect((await s.register('s', 'cam', { query: 'role=publish' })).body.role).toBe('publisher');
    const refused = await s.register('s', 'v2', { query: 'role=publish' });
    expect(refused.status).toBe(403);
    expect(refused.body.message).toContain('has publisher cam');
  });
});
