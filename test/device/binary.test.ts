// `switchboard device` from the compiled executable, alone in an empty directory: the simulator and its
// clips are inside it, and its device publishes to a relay session of a real server.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RelayStats } from '../../src/relay/engine';
import { compiledBinary } from '../compiled-binary';
import { type Running, startServer, until } from '../helpers';
import { runToEnd } from '../process-helpers';

const dir = mkdtempSync(join(tmpdir(), 'switchboard-device-'));
const binary = join(dir, 'switchboard');
let server: Running;

beforeAll(async () => {
  copyFileSync(await compiledBinary(), binary);
  server = startServer();
}, 120_000);

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const relayStats = () => (server.relay as { stats(): RelayStats }).stats();

describe('switchboard device, compiled', () => {
  for (const codec of ['h264', 'vp8'] as const) {
    test(`publishes ${codec} to a relay session, and on SIGINT leaves and prints its summary`, async () => {
      const before = relayStats().packetsIn;
      const proc = Bun.spawn([binary, 'device', '--url', server.url, '--session', `bin-${codec}`, '--peer', 'cam', '--mode', 'relay', '--codec', codec], {
        cwd: dir,
        env: { PATH: process.env.PATH ?? '' },
        stdout: 'pipe',
        stderr: 'pipe',
      });
      let output = '';
      void (async () => {
        const decoder = new TextDecoder();
        for await (const chunk of proc.stdout as unknown as AsyncIterable<Uint8Array>) output += decoder.decode(chunk, { stream: true });
      })();
      try {
        await until(
          () => output.includes(`bin-${codec}/cam publishing: to switchboard`),
          'the device to publish',
          30_000,
          () => output,
        );
        // The server receives its RTP: 30 frames is a second of video.
        await until(
          () => relayStats().packetsIn - before >= 30,
          'the server to receive 30 packets',
          20_000,
          () => output,
        );
      } finally {
        proc.kill('SIGINT');
      }
      expect(await proc.exited).toBe(0);
      expect(output).toContain('SIGINT: leaving');
      expect(output).toMatch(new RegExp(`bin-${codec}/cam: publishing; \\d+ frames .*, [1-9]\\d* packets`));
      expect(output).toContain('total: 1 device');
      // It left: the session is gone with its only peer.
      expect((await fetch(`${server.url}/events/bin-${codec}/cam`)).status).toBe(404);
    }, 60_000);
  }

  test('--count 3 --quiet: three devices, each in its own session, and one summary', async () => {
    const before = relayStats();
    const proc = Bun.spawn([binary, 'device', '--url', server.url, '--session', 'fleet', '--mode', 'relay', '--count', '3', '--quiet', '--codec', 'vp8'], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '' },
      stdout: 'pipe',
      stderr: 'pipe',
    });
    try {
      await until(() => relayStats().sessions - before.sessions >= 3 && relayStats().packetsIn - before.packetsIn >= 90, 'three relay sessions receiving', 30_000);
    } finally {
      proc.kill('SIGINT');
    }
    expect(await proc.exited).toBe(0);
    const output = await new Response(proc.stdout).text();
    const rows = output.trim().split('\n');
    expect(rows.filter((l) => /^fleet-[123]\/device: publishing;/.test(l)).length).toBe(3);
    expect(rows.at(-1)).toMatch(/^total: 3 devices for .*; 3 publishing;/);
  }, 60_000);

  test('--help lists the flags; a bad flag exits 1 naming it', async () => {
    const help = await runToEnd([binary, 'device', '--help'], {}, dir);
    expect(help.code).toBe(0);
    for (const flag of ['--transport', '--mode', '--token', '--codec', '--fps', '--bitrate', '--keyframe-interval-s', '--ignore-pli', '--count'])
      expect(help.output).toContain(flag);
    const bad = await runToEnd([binary, 'device', '--keyframe-interval-s', '20'], {}, dir);
    expect(bad.code).toBe(1);
    expect(bad.output).toContain('--keyframe-interval-s=20 is invalid');
  });
});
