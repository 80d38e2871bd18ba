// The first-frame benchmark's PeerJS page (bundled by bench/first-frame.ts with Bun.build): PeerJS's own
// browser client against a PeerJS server, with the same fake camera and the same timeline recorder as
// switchboard's client. `?role=publish&id=P` answers every call with the camera; `?role=view&id=V&publisher=P`
// calls the publisher, as a PeerJS viewer who knows the device's id does: PeerJS has no registration or
// new-peer, so the viewer offers (a receive-only offer) and the publisher answers with its media.
// `&host=…&port=…` is the PeerJS server. The page's state is `window.bench`.
import { Peer, type PeerOptions } from 'peerjs';
import { type BenchPageState, viewerPage } from './viewer-page';

export type { BenchPageState } from './viewer-page';

const state: BenchPageState = { phase: 'starting' };
window.bench = state;
const params = new URLSearchParams(location.search);
const options: PeerOptions = {
  host: params.get('host') ?? '127.0.0.1',
  port: Number(params.get('port')),
  path: '/',
  key: 'peerjs',
  secure: false,
  config: { iceServers: [] },
  debug: 1,
};
const id = params.get('id') ?? '';

function fail(e: unknown): void {
  state.phase = 'failed';
  state.error = String((e as Error)?.message ?? e);
}

async function publish(): Promise<void> {
  // The served switchboard client's camera constraints.
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: true });
  const peer = new Peer(id, options);
  peer.on('error', fail);
  peer.on('open', () => {
    state.phase = 'live';
  });
  peer.on('call', (call) => call.answer(stream));
}

function view(): void {
  const publisher = params.get('publisher') ?? '';
  // The client's first request is the WebSocket that `new Peer` opens.
  const { video, recorder, update } = viewerPage(state);
  const peer = new Peer(id, options);
  peer.on('error', fail);
  peer.on('open', () => {
    recorder.mark('registered');
    update();
    state.phase = 'live';
    // PeerJS's legacy createOffer options make the offer receive-only (its call() wants a stream: an empty one).
    const call = peer.call(publisher, new MediaStream(), { constraints: { offerToReceiveAudio: true, offerToReceiveVideo: true } } as Parameters<Peer['call']>[2]);
    const pc = call.peerConnection;
    recorder.watch(pc, true, update);
    pc.addEventListener('signalingstatechange', () => {
      if (pc.signalingState === 'have-local-offer') recorder.mark('offer');
      else if (pc.signalingState === 'stable') recorder.mark('answer');
      update();
    });
    call.on('error', fail);
    call.on('stream', (remote) => {
      if (video.srcObject === remote) return;
      video.srcObject = remote;
      video.requestVideoFrameCallback((_, frame) => {
        state.firstFrameShownMs = Math.max(0, performance.timeOrigin + frame.presentationTime - recorder.timeline.startedAt);
        update();
      });
      video.play().catch(() => undefined);
    });
  });
}

try {
  if (params.get('role') === 'publish') publish().catch(fail);
  else view();
} catch (e) {
  fail(e);
}
