// WHIP and WHEP with aiortc, a second WebRTC stack (Python, its own ICE, DTLS and codecs): the server is
// tested against more than werift and libwebrtc. Each client is a real process driving the HTTP exchange.
import { afterEach, describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import type { SessionSnapshot } from '../../src/sessions/backend';
import { type Running, startServer } from '../helpers';
import { ofType, openEvents } from '../sse-client';

const PYTHON = '/usr/bin/python3';
const SCRIPT = join(import.meta.dir, 'aiortc_client.py');

interface ClientEvent {
  event: string;
  count?: number;
  status?: number;
  location?: string;
  answer?: string;
  state?: string;
}

/** One aiortc client process: its events as they come, and a stop that DELETEs its resource. */
class AiortcClient {
  readonly events: ClientEvent[] = [];
  private readonly waiting = new Set<() => void>();
  private readonly process;
  private stderr = '';

  constructor(args: string[]) {
    this.process = Bun.spawn([PYTHON, SCRIPT, ...args], { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' });
    void this.read(this.process.stdout, (line) => {
      this.events.push(JSON.parse(line) as ClientEvent);
      for (const wake of this.waiting) wake();
    });
    void this.read(this.process.stderr, (line) => {
      this.stderr += `${line}\n`;
    });
  }

  private async read(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
    let buffered = '';
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
      buffered += new TextDecoder().decode(chunk);
      let end = buffered.indexOf('\n');
      while (end >= 0) {
        const line = buffered.slice(0, end).trim();
        buffered = buffered.slice(end + 1);
        if (line) onLine(line);
        end = buffered.indexOf('\n');
      }
    }
  }

  /** The first event (from `after` on) that `match` accepts, waiting for it up to `timeoutMs`. */
  async next(match: (e: ClientEvent) => boolean, timeoutMs = 45_000, after = 0): Promise<ClientEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.slice(after).find(match);
      if (found) return found;
      if (Date.now() > deadline || this.process.exitCode !== null) {
        throw new Error(`aiortc: no such event; got ${JSON.stringify(this.events.slice(-5))}\n${this.stderr.slice(-2000)}`);
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.waiting.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, 500);
        this.waiting.add(wake);
      });
    }
  }

  /** How many events have come so far: `next(…, …, seen)` waits for a later one. */
  get seen(): number {
    return this.events.length;
  }

  /** Frames counted so far (decoded by a player, sent by a publisher). */
  get frames(): number {
    return Math.max(0, ...this.events.filter((e) => e.event === 'frames').map((e) => e.count ?? 0));
  }

  async stop(): Promise<void> {
    if (this.process.exitCode === null) {
      this.process.stdin.write('stop\n');
      await this.process.stdin.end();
      const exited = await Promise.race([this.process.exited.then(() => true), Bun.sleep(15_000).then(() => false)]);
      if (!exited) this.process.kill();
    }
    await this.process.exited;
  }
}

const started: { stop(): Promise<unknown> }[] = [];
afterEach(async () => {
  for (const thing of started.splice(0).reverse()) await thing.stop();
});
const serve = (): Running => {
  const server = startServer({ iceUrls: ['stun:127.0.0.1:3478'] });
  started.push(server);
  return server;
};
const client = (...args: string[]) => {
  const c = new AiortcClient(args);
  started.push(c);
  return c;
};
const snapshot = (server: Running, id: string) => server.signalling.snapshot(id) as SessionSnapshot | undefined;

const TIMEOUT = 120_000;

describe('aiortc as WHIP publisher and WHEP player', () => {
  for (const codec of ['h264', 'vp8'] as const) {
    test(
      `${codec === 'h264' ? 'H.264 (packetization-mode 1)' : 'VP8'}: the player decodes what the publisher sends through the relay`,
      async () => {
        const server = serve();
        const publisher = client('publish', `${server.url}/whip/cam?peer=aio-cam`, '--codec', codec, '--audio');
        const created = await publisher.next((e) => e.event === 'created');
        expect(created.location).toMatch(/^\/whip\/cam\//);
        expect(created.answer).toContain(codec === 'h264' ? 'H264/90000' : 'VP8/90000');
        await publisher.next((e) => e.state === 'connected');
        const player = client('play', `${server.url}/whep/cam?peer=aio-screen`, '--codec', codec);
        await player.next((e) => e.event === 'frames' && (e.count ?? 0) >= 30);
        expect(snapshot(server, 'cam')?.peers).toEqual([
          { id: 'aio-cam', role: 'publisher', streaming: true },
          { id: 'aio-screen', role: 'viewer', streaming: true },
        ]);
        expect(server.relay?.stats().packetsOut).toBeGreaterThan(0);
      },
      TIMEOUT,
    );
  }

  test(
    'a player that came before any publisher gets video when one arrives; the publisher DELETEs and publishes again: the player keeps its connection, video resumes on it; an SSE viewer hears of both',
    async () => {
      const server = serve();
      await fetch(`${server.url}/register/cam/sse-viewer?mode=relay&role=view`, { method: 'POST' });
      const events = await openEvents(`${server.url}/events/cam/sse-viewer`);
      started.push({ stop: async () => events.close() });
      const player = client('play', `${server.url}/whep/cam?peer=aio-screen`);
      await player.next((e) => e.state === 'connected');
      const first = client('publish', `${server.url}/whip/cam?peer=cam-1`);
      await events.next(ofType('new-peer', 'cam-1'));
      await player.next((e) => e.event === 'frames' && (e.count ?? 0) >= 20);
      await first.stop();
      expect(first.frames).toBeGreaterThan(0);
      await first.next((e) => e.event === 'deleted' && e.status === 200);
      await events.next(ofType('peer-left', 'cam-1'));
      const paused = player.frames;
      const mark = player.seen;

      const second = client('publish', `${server.url}/whip/cam?peer=cam-2`);
      await events.next(ofType('new-peer', 'cam-2'));
      await player.next((e) => e.event === 'frames' && (e.count ?? 0) >= paused + 20, 45_000, mark);
      // One connection all along: the player never left, never reconnected.
      expect(player.events.filter((e) => e.event === 'created')).toHaveLength(1);
      expect(player.events.filter((e) => e.event === 'state').map((e) => e.state)).toEqual(['connecting', 'connected']);
      expect(
        snapshot(server, 'cam')
          ?.peers.map((p) => p.id)
          .sort(),
      ).toEqual(['aio-screen', 'cam-2', 'sse-viewer']);
      expect(second.frames).toBeGreaterThan(0);
    },
    TIMEOUT,
  );
});
