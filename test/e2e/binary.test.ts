// The compiled executable serves the client page from inside itself: a publisher and a viewer connect
// through dist/switchboard started in an empty directory.
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { compiledBinary } from '../compiled-binary';
import { type ServerProcess, spawnServer } from '../process-helpers';
import { launchBrowser, openPeer, publish, status, waitConnected, waitPeers, waitVideo } from './browser';

const dir = mkdtempSync(join(tmpdir(), 'switchboard-binary-e2e-'));
let browser: Browser;
let server: ServerProcess;
beforeAll(async () => {
  const [binary, launched] = await Promise.all([compiledBinary(), launchBrowser()]);
  browser = launched;
  server = await spawnServer([binary], { cwd: dir });
}, 120_000);
afterAll(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('dist/switchboard: a publisher and a viewer connect and the viewer decodes video', async () => {
  const publisher = await publish(await openPeer(browser, `${server.url}/?session=bin&peer=pub&role=publish`));
  const viewer = await openPeer(browser, `${server.url}/?session=bin&peer=v1&role=view`);
  try {
    await waitConnected(viewer.page, 'pub');
    const video = await waitVideo(viewer.page, 'pub');
    expect(video.framesDecoded).toBeGreaterThan(0);
    expect(video.videoWidth).toBeGreaterThan(0);
    await waitPeers(publisher.page, ['v1'], 'connected');
    expect([...publisher.errors, ...viewer.errors]).toEqual([]);
  } finally {
    await Promise.all([publisher.close(), viewer.close()]);
  }
}, 60_000);

test('dist/switchboard relays: werift runs inside the executable and forwards the publisher to a viewer', async () => {
  const publisher = await publish(await openPeer(browser, `${server.url}/?session=bin-relay&peer=pub&role=publish&mode=relay`));
  const viewer = await openPeer(browser, `${server.url}/?session=bin-relay&peer=v1&role=view`);
  try {
    await waitConnected(publisher.page, 'switchboard');
    const video = await waitVideo(viewer.page, 'switchboard');
    expect(video.framesDecoded).toBeGreaterThan(0);
    expect(Object.keys((await status(viewer.page)).peers)).toEqual(['switchboard']);
    expect((await status(viewer.page)).mode).toBe('relay');
    expect([...publisher.errors, ...viewer.errors]).toEqual([]);
  } finally {
    await Promise.all([publisher.close(), viewer.close()]);
  }
}, 60_000);
