// werift offers no public way to the UDP sockets of a connection, and every one of them needs an 'error'
// listener (see `udpSockets` and `ServerLink.guardSockets` in src/relay/link.ts), so the relay reads
// werift's private fields. werift is pinned to one exact version in package.json for that reason; this
// file fails the day an upgrade moves those fields. Run it before changing werift's version.
import { describe, expect, test } from 'bun:test';
import pkg from '../../package.json';
import { systemClock } from '../../src/clock';
import { defaultConfig } from '../../src/config';
import { ServerLink, udpSockets } from '../../src/relay/link';
import { viewerConfig } from '../../src/relay/settings';
import { udpSockets as processUdpSockets } from '../fixtures/udp-sockets';
import { until } from '../helpers';

describe('werift internals the relay reads', () => {
  test('werift is pinned to the exact version installed', async () => {
    const installed = (await Bun.file(Bun.resolveSync('werift/package.json', import.meta.dir)).json()) as { version: string };
    expect(pkg.dependencies.werift).toBe(installed.version);
  });

  test("every UDP socket a server connection opens is found, and an 'error' on it is logged, not thrown", async () => {
    const before = processUdpSockets();
    const lines: string[] = [];
    const link = new ServerLink('v1', viewerConfig(defaultConfig()), { send: () => {}, clock: systemClock, log: (line) => lines.push(line) });
    try {
      link.pc.addTransceiver('video', { direction: 'sendonly' });
      link.offer();
      await until(() => udpSockets(link.pc).length > 0 && udpSockets(link.pc).every((s) => s.listenerCount('error') > 0), 'the sockets of the connection, guarded', 4000);
      // All of them: as many as the process gained.
      expect(udpSockets(link.pc).length).toBe(processUdpSockets() - before);
      const [socket] = udpSockets(link.pc);
      // Without a listener, an 'error' event throws (and, from Bun's socket, ends the process).
      expect(() => socket?.emit('error', new Error('ICMP port unreachable'))).not.toThrow();
      expect(lines).toContain('relay: v1: ICMP port unreachable (the peer is gone or unreachable)');
    } finally {
      link.close();
    }
  });
});
