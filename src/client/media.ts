// What a publisher sends: the camera and microphone, a screen share, or a moving test pattern drawn on a
// canvas, for a machine without a camera (or a person who would rather not show one).

export type Source = 'camera' | 'screen' | 'pattern';

export const SOURCES: readonly Source[] = ['camera', 'screen', 'pattern'];

export interface LocalMedia {
  stream: MediaStream;
  /** What is actually sent (a fallback may replace what was asked for). */
  source: Source;
  /** Why the source asked for could not be used, in plain words. */
  notice?: string;
  stop(): void;
}

/**
 * Opens the source asked for. A camera or a screen that cannot be had falls back to the test pattern,
 * with a notice saying why, so that a stream can always be started.
 */
export async function openMedia(source: Source): Promise<LocalMedia> {
  if (source === 'pattern') return testPattern();
  try {
    const stream = source === 'camera' ? await camera() : await screen();
    return { stream, source, stop: () => stopTracks(stream) };
  } catch (e) {
    return { ...testPattern(), notice: `${describeMediaError(source, e)} Sending a test pattern instead.` };
  }
}

async function camera(): Promise<MediaStream> {
  const devices = navigator.mediaDevices;
  // Absent outside a secure context (plain http on anything but localhost).
  if (!devices?.getUserMedia) throw new DOMException('no mediaDevices', 'SecureContextError');
  const video = { width: { ideal: 640 }, height: { ideal: 480 } };
  try {
    return await devices.getUserMedia({ video, audio: true });
  } catch (e) {
    // A camera without a microphone is still worth sending.
    if ((e as DOMException).name === 'NotFoundError' || (e as DOMException).name === 'OverconstrainedError') {
      return await devices.getUserMedia({ video: true, audio: false });
    }
    throw e;
  }
}

async function screen(): Promise<MediaStream> {
  const devices = navigator.mediaDevices;
  if (!devices?.getDisplayMedia) throw new DOMException('no getDisplayMedia', 'NotSupportedError');
  try {
    return await devices.getDisplayMedia({ video: true, audio: true });
  } catch (e) {
    // Some browsers (Safari) refuse to capture a screen's sound rather than leave it out.
    if ((e as Error).name === 'TypeError' || (e as Error).name === 'NotSupportedError') return await devices.getDisplayMedia({ video: true });
    throw e;
  }
}

/** Plain words for a getUserMedia/getDisplayMedia failure. */
export function describeMediaError(source: Source, e: unknown): string {
  const what = source === 'screen' ? 'screen sharing' : 'the camera';
  switch ((e as DOMException)?.name) {
    case 'NotAllowedError':
    case 'PermissionDeniedError':
      return `Access to ${what} was denied. Allow it in the browser's site settings and start again.`;
    case 'NotFoundError':
    case 'DevicesNotFoundError':
      return 'No camera was found on this device.';
    case 'NotReadableError':
    case 'TrackStartError':
      return 'The camera is in use by another application, or the system blocked it.';
    case 'OverconstrainedError':
      return 'The camera cannot produce a usable picture size.';
    case 'SecureContextError':
      return 'The browser offers no camera on this page: open it over HTTPS (or on localhost).';
    case 'NotSupportedError':
      return `This browser cannot do ${what}.`;
    case 'AbortError':
      return `Starting ${what} was interrupted.`;
    default:
      return `${what[0]?.toUpperCase()}${what.slice(1)} failed: ${(e as Error)?.message ?? String(e)}.`;
  }
}

const WIDTH = 640;
const HEIGHT = 360;
const FPS = 30;

/** A moving picture with a clock and a frame counter: motion shows at a glance that frames arrive. */
function testPattern(): LocalMedia {
  const canvas = document.createElement('canvas');
  canvas.width = WIDTH;
  canvas.height = HEIGHT;
  const ctx = canvas.getContext('2d');
  if (!ctx || typeof canvas.captureStream !== 'function') throw new Error('This browser cannot draw a test pattern (no canvas capture).');
  let frame = 0;
  const draw = () => {
    const t = performance.now() / 1000;
    frame++;
    ctx.fillStyle = `hsl(${(t * 30) % 360} 55% 35%)`;
    ctx.fillRect(0, 0, WIDTH, HEIGHT);
    const x = (WIDTH - 80) * (0.5 + 0.5 * Math.sin(t * 1.3));
    const y = (HEIGHT - 80) * (0.5 + 0.5 * Math.cos(t * 0.9));
    ctx.fillStyle = '#f5d547';
    ctx.fillRect(x, y, 80, 80);
    ctx.fillStyle = '#fff';
    ctx.font = 'bold 40px system-ui, sans-serif';
    ctx.fillText(new Date().toISOString().slice(11, 22), 24, 56);
    ctx.font = '20px system-ui, sans-serif';
    ctx.fillText(`switchboard test pattern · frame ${frame}`, 24, HEIGHT - 24);
  };
  draw();
  // A timer rather than requestAnimationFrame: it keeps drawing (slower) when the tab is hidden.
  const timer = setInterval(draw, 1000 / FPS);
  const stream = canvas.captureStream(FPS);
  return {
    stream,
    source: 'pattern',
    stop: () => {
      clearInterval(timer);
      stopTracks(stream);
    },
  };
}

function stopTracks(stream: MediaStream): void {
  for (const track of stream.getTracks()) track.stop();
}
