// The relay's werift settings, from the server's configuration.
import { type PeerConfig, RTCRtpCodecParameters, useNACK, usePLI, useSdesMid, useTransportWideCC, useTWCC } from 'werift';
import { type Config, relayPorts } from '../config';

export type RelayConfig = Pick<
  Config,
  | 'relayPortRange'
  | 'relayPublicIp'
  | 'relayHostIps'
  | 'relayIceUrls'
  | 'relayIceUsername'
  | 'relayIceCredential'
  | 'relayVideoCodecs'
  | 'relayIceRestartsPerMin'
  | 'relayKeyframeCacheBytes'
  | 'relayKeyframeCacheMs'
  | 'relayKeyframeCacheTotalBytes'
>;

/**
 * The codecs relay sessions carry: VP8 and H.264 (what browsers and dashcams encode), in the order of
 * RELAY_VIDEO_CODECS, and Opus. A publisher sends the first codec of the server's offer that it has (a
 * browser does so whatever its own preferences), so the order is the operator's choice. The payload
 * types are fixed so that logs and captures read the same on every connection.
 */
function codecs(order: RelayConfig['relayVideoCodecs'], feedback: () => RTCRtpCodecParameters['rtcpFeedback']) {
  const h264 = (payloadType: number, profile: string) =>
    new RTCRtpCodecParameters({
      payloadType,
      mimeType: 'video/H264',
      clockRate: 90_000,
      rtcpFeedback: feedback(),
      parameters: `level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=${profile}`,
    });
  const byName = {
    vp8: () => [new RTCRtpCodecParameters({ payloadType: 96, mimeType: 'video/VP8', clockRate: 90_000, rtcpFeedback: feedback() })],
    h264: () => [h264(102, '42e01f'), h264(104, '4d001f'), h264(106, '640c1f')],
  };
  return {
    video: [...new Set(order)].flatMap((name) => byName[name]()),
    audio: [new RTCRtpCodecParameters({ payloadType: 111, mimeType: 'audio/opus', clockRate: 48_000, channels: 2, parameters: 'minptime=10;useinbandfec=1' })],
  };
}

/** Settings shared by every relay connection: ports, addresses, ICE servers, one transport per peer. */
function common(config: RelayConfig): Partial<PeerConfig> {
  const iceServers = (config.relayIceUrls ?? []).map((url) =>
    url.startsWith('turn') && config.relayIceUsername ? { urls: url, username: config.relayIceUsername, credential: config.relayIceCredential } : { urls: url },
  );
  return {
    iceServers,
    // Without STUN or TURN servers the relay's addresses are its host candidates (RELAY_PUBLIC_IP or the
    // interfaces'): ICE lite, as media servers usually are. Otherwise werift would gather with a public
    // STUN server of its own choosing.
    iceLite: iceServers.length === 0,
    icePortRange: relayPorts(config),
    iceAdditionalHostAddresses: config.relayHostIps,
    // One socket per connection: IPv4 only, audio and video bundled on one transport.
    iceUseIpv6: false,
    bundlePolicy: 'max-bundle',
    // As DTLS server, flight 4 answers the first ClientHello: the cookie exchange (RFC 6347 4.2.1) is
    // there so that a server sends its certificate only to an address that proved it is the client's,
    // and werift sends DTLS to the selected pair's address only, whatever address the ClientHello
    // came from, which an authenticated ICE check selects (ice-lite.ts). One round trip less in every
    // join of a relay session.
    dtls: { helloVerify: false },
  };
}

/**
 * The publisher's connection receives: NACK and PLI upstream, and transport-wide congestion control so
 * that the publisher's encoder finds the bitrate its uplink carries.
 */
export function publisherConfig(config: RelayConfig): Partial<PeerConfig> {
  return {
    ...common(config),
    codecs: codecs(config.relayVideoCodecs, () => [useNACK(), usePLI(), useTWCC()]),
    headerExtensions: { video: [useSdesMid(), useTransportWideCC()], audio: [useSdesMid()] },
  };
}

/** A viewer's connection sends: it takes NACK and PLI; its bandwidth estimate cannot change what the publisher sends. */
export function viewerConfig(config: RelayConfig): Partial<PeerConfig> {
  return { ...common(config), codecs: codecs(config.relayVideoCodecs, () => [useNACK(), usePLI()]) };
}
