// What the first-frame benchmark's own pages (PeerJS, WHEP) share: the state the harness reads, and the
// video element with the join's timeline, recorded with the same code as switchboard's client.
import type { PeerTimeline } from '../../src/client/sdk/switchboard';
import { now, TimelineRecorder } from '../../src/client/sdk/timeline';

export interface BenchPageState {
  phase: 'starting' | 'live' | 'failed';
  error?: string;
  timeline?: PeerTimeline;
  /** When the first video frame was on screen (requestVideoFrameCallback), ms after `timeline.startedAt`. */
  firstFrameShownMs?: number;
}

declare global {
  interface Window {
    bench: BenchPageState;
  }
}

/** A muted video element on the page, and the join's timeline (starting now) kept in `target.timeline`. */
export function viewerPage(target: BenchPageState): { video: HTMLVideoElement; recorder: TimelineRecorder; update: () => void } {
  const video = document.createElement('video');
  video.autoplay = true;
  video.muted = true;
  document.body.append(video);
  const recorder = new TimelineRecorder(now());
  return { video, recorder, update: () => (target.timeline = recorder.timeline) };
}
