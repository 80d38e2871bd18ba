// Relay-session peers without a browser, for the benchmark: werift connections that register, answer
// the server's offer over the seed API, and send (publisher) or count (viewer) RTP.
import { MediaStreamTrack, RTCPeerConnection, RtpHeader, RtpPacket } from 'werift';
import { openEvents, type SseConnection } from '../test/sse-client';

export interface BenchPeer {
  readonly pc: RTCPeerConnection;
  /** Ends the connection; with `leave`, the registration too. */
  close(leave?: boolean): Promise<void>;
}

async function post(url: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Registers, then answers `switchboard`'s offer; `prepare` runs between the offer and the answer, `created` before both. */
export async function relayPeer(
  url: string,
  sessionId: string,
  peerId: string,
  query: string,
  prepare: (pc: RTCPeerConnection) => void,
  created: (pc: RTCPeerConnection) => void = () => {},
): Promise<BenchPeer> {
  const registered = await post(`${url}/register/${sessionId}/${peerId}${query}`);
  if (registered.status !== 200) throw new Error(`register ${peerId}: ${registered.status} ${JSON.stringify(registered.body)}`);
  const events: SseConnection = await openEvents(`${url}/events/${sessionId}/${peerId}`);
  const pc = new RTCPeerConnection({ iceUseIpv6: false, bundlePolicy: 'max-bundle', iceAdditionalHostAddresses: ['127.0.0.1'] });
  created(pc);
  const send = (type: string, payload: unknown) => post(`${url}/message/${sessionId}/${peerId}`, { type, payload, target: 'switchboard' });
  pc.onIceCandidate.subscribe((c) => {
    if (c) void send('ice-candidate', c.toJSON());
  });
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const event = await events.next(undefined, 600_000).catch(() => undefined);
      if (!event || stopped) return;
      const { type, payload } = event.json as { type: string; payload: { sdp: string; candidate: string } };
      if (type === 'offer') {
        await pc.setRemoteDescription({ type: 'offer', sdp: payload.sdp });
        prepare(pc);
        await pc.setLocalDescription(await pc.createAnswer());
        await send('answer', { type: 'answer', sdp: pc.localDescription?.sdp });
      } else if (type === 'ice-candidate' && payload?.candidate) {
        await pc.addIceCandidate(payload);
      }
    }
  })();
  return {
    pc,
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

export interface ViewerCounts {
  received: number;
  /** Packets missing from the sequence (gaps), as far as they were not filled later. */
  lost: number;
  /** Times the viewer's connection failed and it registered again. */
  retries: number;
}

export interface BenchViewer {
  /** Whether its connection with the server is up. */
  readonly connected: boolean;
  counts(): ViewerCounts;
  reset(): void;
  close(): Promise<void>;
}

/**
 * A viewer that counts the video packets it gets and the gaps in their sequence numbers. A connection
 * that fails (a handshake timed out on a loaded machine) is replaced by registering the id again, as a
 * client would.
 */
export async function benchViewer(url: string, sessionId: string, peerId: string): Promise<BenchViewer> {
  let received = 0;
  let highest = -1;
  let expected = 0;
  let retries = 0;
  let closed = false;
  let peer: BenchPeer;
  const connect = () =>
    relayPeer(
      url,
      sessionId,
      peerId,
      '',
      () => {},
      (pc) => {
        pc.connectionStateChange.subscribe((state) => {
          if (state !== 'failed' || closed) return;
          retries++;
          highest = -1; // the new connection's sequence numbers start anywhere
          const failed = peer;
          void failed.close(false).then(async () => {
            if (!closed) peer = await connect();
          });
        });
        // The benchmark's viewers count packets and gaps without decrypting them (the RTP header is not
        // encrypted): the server still encrypts for each one, and the load generator, which shares this
        // machine with the server, costs less than the server it measures.
        pc.connectionStateChange.subscribe((state) => {
          if (state !== 'connected') return;
          for (const transport of pc.dtlsTransports) transport.srtp.decrypt = (packet: Buffer) => packet;
        });
        pc.onTrack.subscribe((track) => {
          if (track.kind !== 'video') return;
          track.onReceiveRtp.subscribe((packet) => {
            received++;
            const seq = packet.header.sequenceNumber;
            if (highest < 0) {
              highest = seq;
              expected = 1;
              return;
            }
            const ahead = (seq - highest) & 0xffff;
            if (ahead > 0 && ahead < 0x8000) {
              expected += ahead;
              highest = seq;
            }
          });
        });
      },
    );
  peer = await connect();
  return {
    get connected() {
      return peer.pc.connectionState === 'connected';
    },
    counts: () => ({ received, lost: Math.max(0, expected - received), retries }),
    reset: () => {
      received = 0;
      expected = 0;
      highest = -1;
    },
    async close() {
      closed = true;
      await peer.close();
    },
  };
}
