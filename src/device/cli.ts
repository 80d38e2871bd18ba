// `switchboard device …` and `bun run device …`: simulated dashcams publishing to a switchboard server,
// one or many in one process. One status line per state change on stdout; a summary on SIGINT or SIGTERM.
import { parseArgs } from 'node:util';
import { type Static, Type as T, type TSchema } from '@sinclair/typebox';
import { AssertError, Value } from '@sinclair/typebox/value';
import { loadClip } from './clip';
import { Device, type DeviceState } from './device';
import { maxKeyframeIntervalS, VideoSource } from './source';

/** The simulator's flags (each key as a kebab-case flag: `keyframeIntervalS` is `--keyframe-interval-s`). */
export const DeviceSettings = T.Object({
  url: T.String({ pattern: '^https?://', default: 'http://127.0.0.1:3478', description: 'origin of the switchboard server' }),
  session: T.String({ minLength: 1, maxLength: 120, default: 'dashcam', description: 'session id to publish in' }),
  peer: T.String({ minLength: 1, maxLength: 120, default: 'device', description: 'peer id of the device' }),
  transport: T.Union([T.Literal('sse'), T.Literal('ws')], { default: 'sse', description: 'event stream: sse (GET /events, POST /message) or ws (GET /ws)' }),
  mode: T.Union([T.Literal('mesh'), T.Literal('relay')], { default: 'mesh', description: 'mode of a session the device creates (an existing one keeps its own)' }),
  token: T.Optional(
    T.String({
      minLength: 1,
      description: "presented at registration as Authorization: Bearer (a JWT, an invite); without it a registration made again presents the last one's token",
    }),
  ),
  codec: T.Union([T.Literal('h264'), T.Literal('vp8')], { default: 'h264', description: 'video codec: h264 (constrained baseline, packetization-mode 1) or vp8' }),
  fps: T.Integer({ minimum: 1, maximum: 60, default: 30, description: 'frames a second' }),
  bitrate: T.Integer({
    minimum: 0,
    default: 0,
    description:
      'kbit/s to send: the clip (about 250 kbit/s) is topped up with RTP padding packets of 255 bytes (about 500 packets a second per Mbit/s of padding); 0, or less than the clip, sends the clip as it is',
  }),
  keyframeIntervalS: T.Number({ exclusiveMinimum: 0, default: 2, description: "seconds between keyframes (at most the clip's 12 s)" }),
  ignorePli: T.Boolean({ default: false, description: 'ignore keyframe requests (PLI, FIR), as cheap hardware encoders do; otherwise a request makes the next frame a keyframe' }),
  count: T.Integer({ minimum: 1, maximum: 10_000, default: 1, description: 'devices in this process, for load: sessions <session>-1…N, each with peer <peer>' }),
  quiet: T.Boolean({ default: false, description: 'print only the summary (for large counts)' }),
});
export type DeviceSettings = Static<typeof DeviceSettings>;

type Key = keyof DeviceSettings & string;
const keys = Object.keys(DeviceSettings.properties) as Key[];
const flagName = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const schemaOf = (key: Key) => DeviceSettings.properties[key] as TSchema;

/** A flag the simulator cannot run with, or a server it cannot start with: told plainly, without a stack. */
export class DeviceError extends Error {
  override name = 'DeviceError';
}

/** The settings from the command line (after `device`), or `help`. */
export function parseDeviceArgs(argv: readonly string[]): DeviceSettings | 'help' {
  const options: Record<string, { type: 'string' | 'boolean' }> = { help: { type: 'boolean' } };
  for (const key of keys) options[flagName(key)] = { type: schemaOf(key).type === 'boolean' ? 'boolean' : 'string' };
  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new DeviceError(`${(e as Error).message} (see switchboard device --help)`);
  }
  if (flags.help) return 'help';
  const raw: Record<string, unknown> = {};
  for (const key of keys) {
    const value = flags[flagName(key)];
    if (value === undefined) continue;
    // TypeBox would truncate "1.5" to an integer: a flag written wrong fails instead.
    if (schemaOf(key).type === 'integer' && !/^\d+$/.test(String(value))) throw new DeviceError(`--${flagName(key)}=${value} is invalid: Expected a whole number`);
    raw[key] = value;
  }
  try {
    return Value.Parse(DeviceSettings, raw);
  } catch (e) {
    if (!(e instanceof AssertError)) throw e;
    const key = (e.error?.path.split('/')[1] ?? '') as Key;
    const choices = (DeviceSettings.properties[key] as TSchema | undefined)?.anyOf as { const?: unknown }[] | undefined;
    const expected = choices?.every((c) => typeof c.const === 'string') ? `Expected one of ${choices.map((c) => c.const).join(', ')}` : (e.error?.message ?? e.message);
    throw new DeviceError(`--${flagName(key)}${raw[key] === undefined ? '' : `=${raw[key]}`} is invalid: ${expected}`);
  }
}

export function deviceHelp(): string {
  const lines = [
    'Usage: switchboard device [--flag value ...]      (or: bun run device [--flag value ...])',
    '',
    'Simulated dashcams: each registers as the publisher of a session (POST /register, with its ICE servers),',
    "reads its event stream, offers to every viewer (mesh) or answers the server's offer (relay), and sends",
    'a looped test clip. A cut stream resumes from its last event id; a lost registration is made again.',
    'One status line per state change; a summary on Ctrl-C.',
    '',
  ];
  for (const key of keys) {
    const s = schemaOf(key);
    const value = s.type === 'boolean' ? '' : ' <value>';
    lines.push(`  --${flagName(key)}${value}`, `      ${s.description}${s.default === undefined || s.type === 'boolean' ? '' : ` (default: ${s.default})`}`);
  }
  lines.push('  --help', '      this text');
  return lines.join('\n');
}

/**
 * Where the devices of a run register: with `--count` above 1, sessions `<session>-1…N`, each with peer
 * `<peer>`, as a fleet is (one camera, one session). In one session they would negotiate with each
 * other too: a publisher offers to every peer that arrives.
 */
export function deviceIds(settings: Pick<DeviceSettings, 'session' | 'peer' | 'count'>): { sessionId: string; peerId: string }[] {
  const { session, peer, count } = settings;
  if (count === 1) return [{ sessionId: session, peerId: peer }];
  return Array.from({ length: count }, (_, i) => ({ sessionId: `${session}-${i + 1}`, peerId: peer }));
}

/** A server on this machine is reached on the loopback address: offer that candidate too. */
const isLoopback = (url: string) => /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(new URL(url).hostname);

export interface RunningDevices {
  devices: Device[];
  sources: VideoSource[];
  /** Stops every device (each leaves its session) and returns the summary. */
  stop(): Promise<string>;
}

/** Starts the devices of `settings`; `print` gets the status lines. */
export async function startDevices(settings: DeviceSettings, print: (line: string) => void): Promise<RunningDevices> {
  const clip = await loadClip(settings.codec);
  if (settings.keyframeIntervalS * settings.fps > clip.frames.length) {
    throw new DeviceError(`--keyframe-interval-s=${settings.keyframeIntervalS} is invalid: at most ${maxKeyframeIntervalS(clip)} s (the clip's length)`);
  }
  const startedAt = performance.now();
  const devices: Device[] = [];
  const sources: VideoSource[] = [];
  const status = (device: Device, state: DeviceState, detail: string) => {
    if (!settings.quiet) print(`${new Date().toISOString()} ${device.id} ${state}: ${detail}`);
  };
  for (const { sessionId, peerId } of deviceIds(settings)) {
    const source = new VideoSource(clip, { fps: settings.fps, bitrateKbps: settings.bitrate, keyframeIntervalS: settings.keyframeIntervalS, ignorePli: settings.ignorePli });
    const device = new Device(
      {
        origin: settings.url.replace(/\/+$/, ''),
        sessionId,
        peerId,
        transport: settings.transport,
        mode: settings.mode,
        token: settings.token,
        codec: settings.codec,
        loopback: isLoopback(settings.url),
      },
      source,
      { status },
    );
    source.start();
    sources.push(source);
    devices.push(device);
    try {
      await device.start();
    } catch (e) {
      await Promise.all(devices.map((d) => d.stop()));
      for (const s of sources) s.stop();
      throw new DeviceError(`${device.id} could not start: ${(e as Error).message}`);
    }
  }
  return {
    devices,
    sources,
    async stop() {
      // Told as things stood when asked to stop: leaving ends every connection.
      const text = summary(devices, sources, (performance.now() - startedAt) / 1000);
      for (const source of sources) source.stop();
      await Promise.all(devices.map((d) => d.stop()));
      return text;
    },
  };
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** What every device did, and the totals. */
export function summary(devices: Device[], sources: VideoSource[], seconds: number): string {
  const kbps = (bytes: number) => Math.round((bytes * 8) / 1000 / Math.max(seconds, 0.001));
  const rows = devices.map((d, i) => {
    const s = sources[i]?.counters;
    const c = d.counters;
    return (
      `${d.id}: ${d.state}; ${s?.frames ?? 0} frames (${s?.keyframes ?? 0} keyframes, ${s?.keyframesOnRequest ?? 0} on request), ` +
      `${c.pli} PLI + ${c.fir} FIR received${sources[i] && (s?.keyframeRequests ?? 0) > (s?.keyframesOnRequest ?? 0) ? ` (${(s?.keyframeRequests ?? 0) - (s?.keyframesOnRequest ?? 0)} without a new keyframe)` : ''}, ` +
      `${c.packetsSent} packets, ${kbps(c.bytesSent)} kbit/s sent over ${plural(c.links, 'connection')}, ` +
      `${plural(d.channel.resumes, 'stream resume')}, ${plural(d.channel.reRegistrations, 'registration')} made again`
    );
  });
  const total = (pick: (d: Device) => number) => devices.reduce((n, d) => n + pick(d), 0);
  rows.push(
    `total: ${plural(devices.length, 'device')} for ${seconds.toFixed(1)} s; ${total((d) => d.counters.packetsSent)} packets, ` +
      `${kbps(total((d) => d.counters.bytesSent))} kbit/s; ${devices.filter((d) => d.state === 'publishing').length} publishing; ` +
      `${plural(
        total((d) => d.channel.resumes),
        'resume',
      )}, ${plural(
        total((d) => d.channel.reRegistrations),
        'registration',
      )} made again`,
  );
  return rows.join('\n');
}

/** The `device` command: runs until SIGINT or SIGTERM, then leaves and prints the summary. */
export async function runDeviceCommand(argv: readonly string[], print: (line: string) => void): Promise<void> {
  const settings = parseDeviceArgs(argv);
  if (settings === 'help') return print(deviceHelp());
  const running = await startDevices(settings, print);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      print(`${new Date().toISOString()} ${signal}: leaving`);
      void running.stop().then((text) => {
        print(text);
        resolve();
      });
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
}
