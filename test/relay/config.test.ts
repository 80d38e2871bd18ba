import { describe, expect, test } from 'bun:test';
import { loadConfig, relayPorts } from '../../src/config';
import { publisherConfig, viewerConfig } from '../../src/relay/settings';

const run = (env: Record<string, string>) => {
  const command = loadConfig([], env);
  if (command.kind !== 'run') throw new Error('expected a run');
  return command.config;
};

describe('relay settings', () => {
  test('a port range, a public address, extra host addresses and the codec order become werift settings', () => {
    const config = run({ RELAY_PORT_RANGE: '40000-40999', RELAY_PUBLIC_IP: '203.0.113.7', RELAY_HOST_IPS: '127.0.0.1', RELAY_VIDEO_CODECS: 'h264,vp8' });
    expect(relayPorts(config)).toEqual([40000, 40999]);
    const viewer = viewerConfig(config);
    expect(viewer).toMatchObject({ icePortRange: [40000, 40999], iceAdditionalHostAddresses: ['127.0.0.1'], iceServers: [], iceLite: true, bundlePolicy: 'max-bundle' });
    expect(viewer.codecs?.video?.map((c) => c.mimeType)).toEqual(['video/H264', 'video/H264', 'video/H264', 'video/VP8']);
    expect(publisherConfig(config).headerExtensions?.video?.length).toBe(2);
  });

  test('with STUN or TURN servers the relay gathers through them, not as ICE lite', () => {
    const config = run({ RELAY_ICE_URLS: 'stun:stun.example.net:3478,turn:turn.example.net:3478', RELAY_ICE_USERNAME: 'u', RELAY_ICE_CREDENTIAL: 'p' });
    expect(viewerConfig(config)).toMatchObject({
      iceLite: false,
      iceServers: [{ urls: 'stun:stun.example.net:3478' }, { urls: 'turn:turn.example.net:3478', username: 'u', credential: 'p' }],
    });
  });

  test.each([
    [{ RELAY_PORT_RANGE: '5000' }, 'RELAY_PORT_RANGE'],
    [{ RELAY_PORT_RANGE: '6000-5000' }, 'RELAY_PORT_RANGE'],
    [{ RELAY_PORT_RANGE: '1-70000' }, 'RELAY_PORT_RANGE'],
    [{ RELAY_PUBLIC_IP: 'example.net' }, 'RELAY_PUBLIC_IP'],
    [{ RELAY_PUBLIC_IP: '300.1.1.1' }, 'RELAY_PUBLIC_IP'],
    [{ RELAY_ICE_USERNAME: 'u' }, 'RELAY_ICE_USERNAME'],
    [{ RELAY_VIDEO_CODECS: 'av1' }, 'RELAY_VIDEO_CODECS'],
  ])('%p is refused, naming the setting', (env, name) => {
    expect(() => run(env as Record<string, string>)).toThrow(name);
  });
});
