// Relay-session peers without a browser, for the benchmark: a simulated dashcam (src/device) that
// publishes, and werift viewers that answer the server's offer over the seed API, count what they get
// and send the RTCP a browser sends (receiver reports, NACKs for missing packets, a PLI at the start).
import { join } from 'node:path';
import { MediaStreamTrack, type PeerConfig, RTCPeerConnection, RTCRtpCodecParameters, type RTCRtpTransceiver, RtpHeader, RtpPacket, useNACK, usePLI } from 'werift';
import { isNewConnection } from '../src/client/sdk/sdp';
import { CLIP_FPS, type Clip, parseAnnexB } from '../src/device/clip';
import { Device } from '../src/device/device';
import { VideoSource } from '../src/device/source';
import { openEvents, type SseConnection } from '../test/sse-client';

/**
 * What a browser viewer answers with: H.264 constrained baseline in packetization-mode 1 and Opus, with
 * NACK and PLI feedback. werift's receiver sends NACKs only for a codec that has NACK feedback, and
 * receiver reports (every 0.5 to 1.5 s) for every stream it receives.
 */
const VIEWER_CODECS = {
  video: [
    new RTCRtpCodecParameters({
      mimeType: 'video/H264',
      clockRate: 90_000,
      payloadType: 102,
      rtcpFeedback: [useNACK(), usePLI()],
      parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
    }),
  ],
  audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48_000, channels: 2, payloadType: 111 })],
};

export interface BenchPeer {
  /** Its connection with the server: a new one when another instance takes the session's media over. */
  readonly pc: RTCPeerConnection;
  /** Ends the connection; with `leave`, the registration too. */
  close(leave?: boolean): Promise<void>;
}

async function post(url: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/**
 * Registers, then answers `switchboard`'s offer; `prepare` runs between the offer and the answer, `created`
 * before both, for each connection: an offer with another DTLS certificate (another instance of a cluster
 * carries the session now) gets a new one. With `ownOffer`, the peer offers the server its connection
 * first (receive-only, `prepare` run before the offer), then opens its stream, where the answer comes.
 */
export async function relayPeer(
  url: string,
  sessionId: string,
  peerId: string,
  query: string,
  prepare: (pc: RTCPeerConnection) => void,
  created: (pc: RTCPeerConnection) => void = () => {},
  codecs?: Partial<PeerConfig>['codecs'],
  ownOffer = false,
): Promise<BenchPeer> {
  const registered = await post(`${url}/register/${sessionId}/${peerId}${query}`);
  if (registered.status !== 200) throw new Error(`register ${peerId}: ${registered.status} ${JSON.stringify(registered.body)}`);
  const send = (type: string, payload: unknown) => post(`${url}/message/${sessionId}/${peerId}`, { type, payload, target: 'switchboard' });
  const connection = () => {
    const made = new RTCPeerConnection({ iceUseIpv6: false, bundlePolicy: 'max-bundle', iceAdditionalHostAddresses: ['127.0.0.1'], ...(codecs ? { codecs } : {}) });
    created(made);
    made.onIceCandidate.subscribe((c) => {
      if (c && made === pc) void send('ice-candidate', c.toJSON());
    });
    return made;
  };
  let pc = connection();
  if (ownOffer) {
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    prepare(pc);
    await pc.setLocalDescription(await pc.createOffer());
    const offered = await send('offer', { type: 'offer', sdp: pc.localDescription?.sdp });
    if (offered.status !== 200) throw new Error(`offer of ${peerId}: ${offered.status} ${JSON.stringify(offered.body)}`);
  }
  const events: SseConnection = await openEvents(`${url}/events/${sessionId}/${peerId}`);
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const event = await events.next(undefined, 600_000).catch(() => undefined);
      if (!event || stopped) return;
      const { type, payload } = event.json as { type: string; payload: { sdp: string; candidate: string } };
      if (type === 'offer') {
        if (isNewConnection(pc.remoteDescription?.sdp, payload.sdp)) {
          void pc.close();
          pc = connection();
        }
        await pc.setRemoteDescription({ type: 'offer', sdp: payload.sdp });
        prepare(pc);
        await pc.setLocalDescription(await pc.createAnswer());
        await send('answer', { type: 'answer', sdp: pc.localDescription?.sdp });
      } else if (type === 'answer' && pc.signalingState === 'have-local-offer') {
        await pc.setRemoteDescription({ type: 'answer', sdp: payload.sdp });
      } else if (type === 'ice-candidate' && payload?.candidate) {
        await pc.addIceCandidate(payload);
      }
    }
  })();
  return {
    get pc() {
      return pc;
    },
    async close(leave = true) {
      stopped = true;
      events.close();
      if (leave) await fetch(`${url}/register/${sessionId}/${peerId}`, { method: 'DELETE' }).catch(() => undefined);
      await pc.close();
      await loop.catch(() => undefined);
    },
  };
}

/** How a synthetic publisher encodes: dashcam encoders often ignore keyframe requests and send one every 2-10 s. */

export interface PublisherOptions {
  /** Seconds between keyframes (default 2). */
  keyframeIntervalS?: number;
  /** Whether a keyframe request (PLI) is answered with a keyframe (default true). */
  honoursKeyframeRequests?: boolean;
}

/**
 * A publisher of synthetic VP8 at `kbps`: 30 frames a second cut into packets of at most 1100 bytes, a
 * keyframe every 2 s (`keyframeIntervalS`) and whenever the server asks for one (unless told not to).
 */
export async function benchPublisher(
  url: string,
  sessionId: string,
  kbps: number,
  options: PublisherOptions = {},
): Promise<BenchPeer & { packets: () => number; keyframes: () => number }> {
  const { keyframeIntervalS = 2, honoursKeyframeRequests = true } = options;
  const track = new MediaStreamTrack({ kind: 'video' });
  let keyframeWanted = true;
  let keyframes = 0;
  const peer = await relayPeer(url, sessionId, 'bench-publisher', '?mode=relay&role=publish', (pc) => {
    for (const transceiver of pc.getTransceivers()) {
      if (transceiver.kind !== 'video') continue;
      transceiver.setDirection('sendonly');
      void transceiver.sender.replaceTrack(track);
      transceiver.sender.onPictureLossIndication.subscribe(() => {
        if (honoursKeyframeRequests) keyframeWanted = true;
      });
    }
  });
  while (peer.pc.connectionState !== 'connected') await Bun.sleep(20);
  const frameBytes = Math.round((kbps * 1000) / 8 / 30);
  const packetsPerFrame = Math.ceil(frameBytes / 1100);
  const body = Buffer.alloc(Math.ceil(frameBytes / packetsPerFrame), 0x5a);
  let seq = 0;
  let frame = 0;
  let sent = 0;
  const started = performance.now();
  const timer = setInterval(() => {
    // Frames due by now (timers drift under load; the bitrate should not).
    const due = Math.floor(((performance.now() - started) / 1000) * 30);
    for (; frame < due; frame++) {
      const key = keyframeWanted || frame % Math.round(keyframeIntervalS * 30) === 0;
      keyframeWanted = false;
      if (key) keyframes++;
      for (let i = 0; i < packetsPerFrame; i++) {
        const descriptor = Buffer.from([i === 0 ? 0x10 : 0x00, key ? 0x00 : 0x01, 0x00]);
        const header = new RtpHeader({ payloadType: 96, sequenceNumber: seq++ & 0xffff, timestamp: (frame * 3000) >>> 0, ssrc: 0x5eed, marker: i === packetsPerFrame - 1 });
        track.writeRtp(new RtpPacket(header, Buffer.concat([descriptor, body])));
        sent++;
      }
    }
  }, 10);
  return {
    ...peer,
    packets: () => sent,
    keyframes: () => keyframes,
    async close() {
      clearInterval(timer);
      await peer.close();
    },
  };
}

/** The benchmark's clip (bench/clips/make-clips.sh): H.264 720p30, about 1.5 Mbit/s, 2 s from its keyframe. */
const CLIP = join(import.meta.dir, 'clips', 'h264-720p-1500k.h264');

export interface BenchDeviceOptions {
  /** Kbit/s the device sends: what the clip falls short of is made up with RTP padding. */
  kbps: number;
  /** Seconds between keyframes (the clip allows 2 at most). */
  keyframeIntervalS: number;
  /** Keyframe requests change nothing, as on cheap hardware encoders. */
  ignorePli: boolean;
}

export interface BenchDevice {
  device: Device;
  source: VideoSource;
  /** RTP packets sent to the server so far. */
  packets(): number;
  close(): Promise<void>;
}

/**
 * A simulated dashcam (src/device) publishing the benchmark's clip in a relay session: it registers,
 * answers the server's offer, sends a keyframe every `keyframeIntervalS` and, unless told to ignore
 * them, on the server's keyframe requests. Resolves once it is connected.
 */
export async function benchDevice(url: string, sessionId: string, options: BenchDeviceOptions, log: (line: string) => void = () => {}): Promise<BenchDevice> {
  const clip: Clip = { codec: 'h264', frames: parseAnnexB(new Uint8Array(await Bun.file(CLIP).arrayBuffer())) };
  if (!clip.frames[0]?.key) throw new Error(`${CLIP} does not start with a keyframe`);
  const source = new VideoSource(clip, { fps: CLIP_FPS, bitrateKbps: options.kbps, keyframeIntervalS: options.keyframeIntervalS, ignorePli: options.ignorePli });
  const device = new Device({ origin: url, sessionId, peerId: 'device', transport: 'sse', mode: 'relay', codec: 'h264', loopback: true }, source, {
    status: (d, state, detail) => log(`${d.id} ${state}: ${detail}`),
  });
  source.start();
  try {
    await device.start();
    const deadline = Date.now() + 20_000;
    while (device.counters.connected === 0) {
      if (Date.now() > deadline) throw new Error(`the device did not connect to the relay within 20 s (${device.state})`);
      await Bun.sleep(20);
    }
  } catch (e) {
    source.stop();
    await device.stop();
    throw e;
  }
  return {
    device,
    source,
    packets: () => device.counters.packetsSent,
    async close() {
      source.stop();
      await device.stop();
    },
  };
}

export interface ViewerCounts {
  /** Video packets received, retransmissions and duplicates included. */
  received: number;
  /** Distinct sequence numbers received. */
  unique: number;
  /** Sequence numbers from the first to the newest received: what should have come. */
  expected: number;
  /** Sequence numbers never received (gaps that no retransmission filled). */
  lost: number;
  /** NACK packets the viewer sent. */
  nacks: number;
  /** Times the viewer's connection failed and it registered again. */
  retries: number;
}

export interface BenchViewer {
  /** Whether its connection with the server is up. */
  readonly connected: boolean;
  counts(): ViewerCounts;
  /** Starts a new window of counts. */
  reset(): void;
  close(): Promise<void>;
}

/**
 * A viewer that counts the video packets it gets and the sequence numbers missing from them, and sends
 * RTCP as a browser does: werift's receiver reports and NACKs, and a PLI when the first packet of a
 * stream arrives. A connection that fails (a handshake timed out on a loaded machine) is replaced by
 * registering the id again, as a client would.
 */
export async function benchViewer(url: string, sessionId: string, peerId: string): Promise<BenchViewer> {
  // Which window each sequence number was last seen in: a window (seconds of one stream) is far shorter
  // than the 65,536 sequence numbers, so a number seen again in the same window is a duplicate.
  const seen = new Uint32Array(0x10000);
  let window = 1;
  let received = 0;
  let unique = 0;
  let expected = 0;
  let highest = -1;
  let nacks = 0;
  let retries = 0;
  let closed = false;
  let peer: BenchPeer | undefined;
  const connect = () =>
    relayPeer(
      url,
      sessionId,
      peerId,
      '',
      () => {},
      (pc) => {
        if (peer) {
          // A new connection of the same registration (another instance carries the media): its
          // sequence numbers start anywhere, as after a retry.
          highest = -1;
          window++;
        }
        pc.connectionStateChange.subscribe((state) => {
          if (state !== 'failed' || closed) return;
          retries++;
          const failed = peer;
          void (failed?.close(false) ?? Promise.resolve())
            .then(async () => {
              if (closed) return;
              peer = await connect();
              // The new connection's sequence numbers start anywhere: its gaps are counted on from there, and
              // the time without a connection is no gap.
              highest = -1;
              window++;
            })
            .catch(() => undefined); // the next step finds it not receiving
        });
        // The viewers count packets and gaps without decrypting them (the RTP header is not encrypted):
        // the server still encrypts for each one, and the load generator, which shares this machine with
        // the server, costs less than the server it measures. RTCP both ways is SRTCP, as in a browser.
        pc.connectionStateChange.subscribe((state) => {
          if (state !== 'connected') return;
          for (const transport of pc.dtlsTransports) transport.srtp.decrypt = (packet: Buffer) => packet;
        });
        pc.onTrack.subscribe((track) => {
          if (track.kind !== 'video') return;
          const transceiver: RTCRtpTransceiver | undefined = pc.getTransceivers().find((t) => t.receiver.tracks.includes(track));
          transceiver?.receiver.onPacketLost.subscribe(() => {
            nacks++;
          });
          let asked = false;
          track.onReceiveRtp.subscribe((packet) => {
            if (peer?.pc !== pc) return; // a connection given up on
            if (!asked) {
              asked = true;
              void transceiver?.receiver.sendRtcpPLI(packet.header.ssrc).catch(() => undefined);
            }
            received++;
            const seq = packet.header.sequenceNumber;
            if (highest < 0) {
              highest = seq;
              expected++;
            } else {
              const ahead = (seq - highest) & 0xffff;
              if (ahead > 0 && ahead < 0x8000) {
                expected += ahead;
                highest = seq;
              } else if (ahead !== 0 && ((highest - seq) & 0xffff) >= expected) return; // from before the window
            }
            if (seen[seq] !== window) {
              seen[seq] = window;
              unique++;
            }
          });
        });
      },
      VIEWER_CODECS,
    );
  peer = await connect();
  return {
    get connected() {
      return peer?.pc.connectionState === 'connected';
    },
    counts: () => ({ received, unique, expected, lost: Math.max(0, expected - unique), nacks, retries }),
    reset: () => {
      window++;
      received = 0;
      unique = 0;
      expected = 0;
      highest = -1;
      nacks = 0;
    },
    async close() {
      closed = true;
      await peer?.close();
    },
  };
}
