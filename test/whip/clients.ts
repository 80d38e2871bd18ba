// WHIP/WHEP clients for the tests: real offers from a WebRTC stack (werift), and the HTTP exchange.
import { RTCPeerConnection } from 'werift';
import { until } from '../helpers';

export const SDP = 'application/sdp';
export const FRAGMENT = 'application/trickle-ice-sdpfrag';

/** Connections made for a test, closed after it. */
const made: RTCPeerConnection[] = [];

export async function closeClients(): Promise<void> {
  await Promise.all(made.splice(0).map((pc) => pc.close().catch(() => undefined)));
}

/** A client's offer: sendonly (WHIP) or recvonly (WHEP) audio and/or video, with its ICE candidates. */
export async function clientOffer(direction: 'sendonly' | 'recvonly', kinds: ('audio' | 'video')[] = ['video', 'audio']): Promise<{ pc: RTCPeerConnection; sdp: string }> {
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  made.push(pc);
  for (const kind of kinds) pc.addTransceiver(kind, { direction });
  await pc.setLocalDescription(await pc.createOffer());
  return { pc, sdp: pc.localDescription?.sdp ?? '' };
}

/** Applies the server's answer and waits until the client's connection is up. */
export async function connect(pc: RTCPeerConnection, answer: string): Promise<void> {
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  if (pc.connectionState === 'connected') return;
  await new Promise<void>((resolve) => {
    const { unSubscribe } = pc.connectionStateChange.subscribe((state) => {
      if (state !== 'connected') return;
      unSubscribe();
      resolve();
    });
  });
}

export { until };
