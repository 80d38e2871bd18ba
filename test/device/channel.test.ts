// The device's signalling against a real listener: where its ICE servers come from, in an access mode
// that hands TURN credentials only to a registered peer.
import { expect, test } from 'bun:test';
import { DeviceChannel } from '../../src/device/channel';
import { turnRestCredential } from '../../src/ice/ice-servers';
import { serversPerTest } from '../helpers';

const TURN_URL = 'turn:127.0.0.1:3479?transport=udp';
const SECRET = 'a-turn-secret';

const { listen } = serversPerTest();

const channel = (origin: string) =>
  new DeviceChannel(
    { origin, sessionId: 'fleet', peerId: 'cam-1', transport: 'sse', mode: 'mesh' },
    { signal: () => undefined, stream: () => undefined, registered: () => undefined },
  );

/** The credential is the one coturn's use-auth-secret expects for its username, and the username names the device. */
function expectTurnFor(peerId: string, servers: { urls: string; username?: string; credential?: string }[] | undefined): void {
  expect(servers).toHaveLength(1);
  const [entry] = servers ?? [];
  expect(entry?.urls).toBe(TURN_URL);
  const [expiry, name] = (entry?.username ?? '').split(':');
  expect(name).toBe(peerId);
  expect(entry).toEqual({ urls: TURN_URL, ...turnRestCredential(SECRET, peerId, Number(expiry)) });
}

test("AUTH_MODE=token: the registration's answer brings the device TURN credentials in its name, and GET /iceServers with its token the same", async () => {
  const device = channel(listen({ authMode: 'token', iceUrls: [TURN_URL], turnSecret: SECRET }).url);
  const registration = await device.register();
  expectTurnFor('cam-1', registration.iceServers);
  // Asked after registering, with the session and the token: what a server that sends none in its answer gives.
  expectTurnFor('cam-1', await device.iceServers());
});
