// The first-frame benchmark's WHEP page (bundled by bench/first-frame.ts with Bun.build): a standard WHEP
// player of a relay session, written the way a dashboard would write one with nothing but the browser:
// a receive-only offer POSTed to `/whep/:sessionId` at once (the server is an ICE-lite agent, so the
// player's candidates need not go with it: its checks reach the server's candidates, which the answer
// carries), the answer applied, the video shown. `?server=<origin>&session=S&peer=V`. The page's state is
// `window.bench`, with the same timeline recorder as switchboard's client. A WHEP player has no
// registration: its phases start with *offer* (made) and *answer* (the POST answered and applied).
import { type BenchPageState, viewerPage } from './viewer-page';

const state: BenchPageState = { phase: 'starting' };
window.bench = state;
const params = new URLSearchParams(location.search);

function fail(e: unknown): void {
  state.phase = 'failed';
  state.error = String((e as Error)?.message ?? e);
}

async function view(): Promise<void> {
  // The join starts here; its first request is the POST, once the offer is made.
  const { video, recorder, update } = viewerPage(state);
  const pc = new RTCPeerConnection();
  recorder.watch(pc, true, update);
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addEventListener('track', ({ track, streams }) => {
    if (track.kind !== 'video') return;
    video.srcObject = streams[0] ?? new MediaStream([track]);
    video.requestVideoFrameCallback((_, frame) => {
      state.firstFrameShownMs = Math.max(0, performance.timeOrigin + frame.presentationTime - recorder.timeline.startedAt);
      update();
    });
    video.play().catch(() => undefined);
  });
  await pc.setLocalDescription();
  recorder.mark('offer');
  update();
  const url = `${params.get('server')}/whep/${params.get('session')}?peer=${params.get('peer')}`;
  const answer = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: pc.localDescription?.sdp });
  if (answer.status !== 201) throw new Error(`WHEP: ${answer.status} ${await answer.text()}`);
  state.phase = 'live';
  await pc.setRemoteDescription({ type: 'answer', sdp: await answer.text() });
  recorder.mark('answer');
  update();
}

view().catch(fail);
