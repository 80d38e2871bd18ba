// The simulator's flags: defaults, conversions, refusals that name the flag, and the ids of --count.
import { describe, expect, test } from 'bun:test';
import { DeviceError, deviceHelp, deviceIds, parseDeviceArgs } from '../../src/device/cli';

describe('switchboard device flags', () => {
  test('defaults: one H.264 device publishing in mesh over SSE, a keyframe every 2 s, requests honoured', () => {
    expect(parseDeviceArgs([])).toEqual({
      url: 'http://127.0.0.1:3478',
      session: 'dashcam',
      peer: 'device',
      transport: 'sse',
      mode: 'mesh',
      codec: 'h264',
      fps: 30,
      bitrate: 0,
      keyframeIntervalS: 2,
      ignorePli: false,
      count: 1,
      quiet: false,
    });
  });

  test('kebab-case flags, numbers converted', () => {
    expect(parseDeviceArgs(['--keyframe-interval-s', '0.5', '--ignore-pli', '--fps', '15', '--codec', 'vp8', '--transport', 'ws', '--token', 't0k'])).toMatchObject({
      keyframeIntervalS: 0.5,
      ignorePli: true,
      fps: 15,
      codec: 'vp8',
      transport: 'ws',
      token: 't0k',
    });
    expect(parseDeviceArgs(['--help'])).toBe('help');
  });

  for (const [args, message] of [
    [['--fps', '1.5'], '--fps=1.5 is invalid: Expected a whole number'],
    [['--fps', '0'], '--fps=0 is invalid'],
    [['--codec', 'h265'], '--codec=h265 is invalid: Expected one of h264, vp8'],
    [['--mode', 'sfu'], '--mode=sfu is invalid: Expected one of mesh, relay'],
    [['--url', 'signal.example.com'], '--url=signal.example.com is invalid'],
    [['--keyframe-interval-s', '0'], '--keyframe-interval-s=0 is invalid'],
    [['--frobnicate'], "Unknown option '--frobnicate'"],
  ] as const) {
    test(`${args.join(' ')} is refused, naming the flag`, () => {
      expect(() => parseDeviceArgs(args)).toThrow(DeviceError);
      expect(() => parseDeviceArgs(args)).toThrow(message);
    });
  }

  test('--help names every flag with its default', () => {
    const help = deviceHelp();
    for (const flag of [
      '--url',
      '--session',
      '--peer',
      '--transport',
      '--mode',
      '--token',
      '--codec',
      '--fps',
      '--bitrate',
      '--keyframe-interval-s',
      '--ignore-pli',
      '--count',
      '--quiet',
    ])
      expect(help).toContain(`  ${flag}`);
    expect(help).toContain('RTP padding');
  });

  test('--count: one session per device, each with the same peer id', () => {
    const base = { session: 's', peer: 'cam', count: 1 };
    expect(deviceIds(base)).toEqual([{ sessionId: 's', peerId: 'cam' }]);
    expect(deviceIds({ ...base, count: 3 })).toEqual([1, 2, 3].map((n) => ({ sessionId: `s-${n}`, peerId: 'cam' })));
  });
});
