// Simulated devices in the test process, started with the command's own flags and stopped after the test.
import type { Page } from 'playwright-core';
import { parseDeviceArgs, type RunningDevices, startDevices } from '../../src/device/cli';
import type { Device } from '../../src/device/device';
import type { VideoSource } from '../../src/device/source';
import { until } from '../helpers';

export interface TestDevice {
  device: Device;
  source: VideoSource;
  /** The status lines printed so far. */
  lines: string[];
  stop(): Promise<string>;
}

/** One device, as `switchboard device --url <url> …flags` would start it. */
export async function startDevice(url: string, flags: string[]): Promise<TestDevice> {
  const settings = parseDeviceArgs(['--url', url, ...flags]);
  if (settings === 'help') throw new Error('--help is not a device');
  const lines: string[] = [];
  const running: RunningDevices = await startDevices(settings, (line) => lines.push(line));
  const [device, source] = [running.devices[0], running.sources[0]];
  if (!device || !source) throw new Error('no device started');
  return { device, source, lines, stop: () => running.stop() };
}

/**
 * Runs before the page's scripts: when the viewer made its first request (`POST /register`; a seed
 * client's is `GET /iceServers`) and when
 * the first video frame of any of its connections was decoded (page clock), and the codec it came in,
 * from the browser's own getStats.
 */
export const FIRST_FRAME = `(() => {
  const created = [];
  const nativeFetch = window.fetch.bind(window);
  window.fetch = (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    if (url.includes('/register/') || url.includes('/iceServers')) first.requestedAt ??= performance.now();
    return nativeFetch(input, init);
  };
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      created.push(this);
    }
  };
  const first = { requestedAt: undefined, at: undefined, codec: undefined };
  window.__firstFrame = first;
  // The ICE username fragment of each connection's remote description: an ICE restart changes it.
  window.__remoteUfrags = () => created.map((pc) => /a=ice-ufrag:(\\S+)/.exec(pc.remoteDescription?.sdp ?? '')?.[1]);
  // Everything the page received on its transports: media, headers and padding.
  window.__received = async () => {
    let bytes = 0;
    let frames = 0;
    for (const pc of created) {
      if (pc.connectionState === 'closed') continue;
      for (const r of (await pc.getStats()).values()) {
        if (r.type === 'transport') bytes += r.bytesReceived ?? 0;
        if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded ?? 0;
      }
    }
    return { bytes, frames, at: performance.now() };
  };
  const poll = setInterval(async () => {
    for (const pc of created) {
      if (pc.connectionState === 'closed') continue;
      const reports = [...(await pc.getStats()).values()];
      const inbound = reports.find((r) => r.type === 'inbound-rtp' && r.kind === 'video' && r.framesDecoded > 0);
      if (!inbound) continue;
      first.at = performance.now();
      first.codec = reports.find((r) => r.id === inbound.codecId)?.mimeType;
      clearInterval(poll);
      return;
    }
  }, 10);
})();`;

declare global {
  interface Window {
    __firstFrame: { requestedAt?: number; at?: number; codec?: string };
    __received(): Promise<{ bytes: number; frames: number; at: number }>;
    __remoteUfrags(): (string | undefined)[];
  }
}

/** Waits for the page's first decoded frame: its codec, and how long after the first request it came. */
export async function firstFrame(page: Page, timeout = 30_000): Promise<{ afterRequestMs: number; codec: string }> {
  const handle = await page.waitForFunction(() => (window.__firstFrame.at === undefined ? false : window.__firstFrame), undefined, { timeout, polling: 50 });
  const { requestedAt, at, codec } = (await handle.jsonValue()) as { requestedAt?: number; at: number; codec: string };
  if (requestedAt === undefined) throw new Error('the page decoded video without registering');
  return { afterRequestMs: at - requestedAt, codec };
}

/** The kbit/s the page receives, over the time it takes to decode `frames` more frames. */
export async function receivedKbps(page: Page, frames = 60): Promise<number> {
  const received = () => page.evaluate(() => window.__received());
  const start = await received();
  let end = start;
  await until(async () => (end = await received()).frames >= start.frames + frames, `${frames} more frames decoded`, 20_000);
  return ((end.bytes - start.bytes) * 8) / (end.at - start.at);
}
