// The test page's script: medooze's WHIP and WHEP clients (npm whip-whep), driven from the test.
import { WHEPClient } from 'whip-whep/whep.js';
import { WHIPClient } from 'whip-whep/whip.js';

interface Clients {
  whip?: WHIPClient;
  pc?: RTCPeerConnection;
  publish(url: string): Promise<void>;
  play(url: string): Promise<void>;
  stats(): Promise<Stats>;
  /** The stats of a moment ago, refreshed all the time: what a test's synchronous wait reads. */
  latest?: Stats;
}

interface Stats {
  videoOutbound: number;
  framesDecoded: number;
  connectionState: string | undefined;
  remoteUfrag: string | undefined;
}

const w = window as unknown as { clients: Clients };

w.clients = {
  async publish(url) {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: true });
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    const whip = new WHIPClient();
    w.clients.pc = pc;
    w.clients.whip = whip;
    await whip.publish(pc, url);
  },
  async play(url) {
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    document.body.append(video);
    pc.ontrack = (event) => {
      video.srcObject = event.streams[0] ?? new MediaStream([event.track]);
    };
    w.clients.pc = pc;
    await new WHEPClient().view(pc, url);
  },
  async stats() {
    const pc = w.clients.pc;
    const reports = pc ? [...(await pc.getStats()).values()] : [];
    return {
      videoOutbound: reports.filter((r) => r.type === 'outbound-rtp' && r.kind === 'video').length,
      framesDecoded: reports.filter((r) => r.type === 'inbound-rtp' && r.kind === 'video').reduce((n, r) => n + (r.framesDecoded ?? 0), 0),
      connectionState: pc?.connectionState,
      remoteUfrag: /a=ice-ufrag:(.*)\r\n/.exec(pc?.remoteDescription?.sdp ?? '')?.[1],
    };
  },
};

setInterval(async () => {
  w.clients.latest = await w.clients.stats();
}, 100);
