// The encoder the simulator pretends to be: it plays the clip's first `keyframe interval × fps` frames in
// a loop (every loop starts at the clip's only keyframe), at the frame rate asked for, and pads up to
// the bitrate asked for. A keyframe request (PLI, FIR) restarts the loop at once, unless it is ignored,
// as cheap hardware encoders do. One source per device: every connection of the device sends the same
// frames, as one camera's one encoder would.
import { type Cancel, type Clock, systemClock } from '../clock';
import { CLIP_FPS, type Clip } from './clip';
import { packetize } from './packetize';

/** What the device sends and how. */
export interface VideoSettings {
  fps: number;
  /** Kbit/s to reach with RTP padding; 0 sends the clip as it is. */
  bitrateKbps: number;
  keyframeIntervalS: number;
  /** Keyframe requests change nothing: keyframes come only every `keyframeIntervalS`. */
  ignorePli: boolean;
}

/** One RTP packet's worth, before the sequence number, SSRC and payload type of a connection. */
export interface OutPacket {
  payload: Uint8Array;
  marker: boolean;
  /** 90 kHz, from the source's start: a connection adds its own offset. */
  timestamp: number;
  /** A padding-only packet: `payload` is the padding, its last byte its length (RFC 3550 §5.1). */
  padding: boolean;
}

/** Called with every frame's packets (padding after the frame's own). */
export type PacketSink = (packets: OutPacket[], key: boolean) => void;

export interface SourceCounters {
  frames: number;
  keyframes: number;
  /** Bytes of media payload, and of padding. */
  mediaBytes: number;
  paddingBytes: number;
  keyframeRequests: number;
  /** Requests that made a keyframe (the others were ignored, or came while one was already due). */
  keyframesOnRequest: number;
}

/** RFC 3550's padding length is one byte. */
const MAX_PADDING = 255;
const CLOCK_RATE = 90_000;
/** Every padding packet is the same bytes: zeros, then their count. */
const PADDING = new Uint8Array(MAX_PADDING);
PADDING[MAX_PADDING - 1] = MAX_PADDING;

/** The longest keyframe interval the clip allows, in seconds. */
export const maxKeyframeIntervalS = (clip: Clip) => clip.frames.length / CLIP_FPS;

export class VideoSource {
  readonly counters: SourceCounters = { frames: 0, keyframes: 0, mediaBytes: 0, paddingBytes: 0, keyframeRequests: 0, keyframesOnRequest: 0 };
  private readonly sinks = new Set<PacketSink>();
  private readonly loopLength: number;
  /** Index in the loop of the next frame; 0 is the keyframe. */
  private next = 0;
  private sent = 0;
  private startedAt = 0;
  private cancel: Cancel | undefined;
  /** Bytes owed to the bitrate: grows by a frame's budget each frame, shrinks by what was sent. */
  private owed = 0;
  /** When the last keyframe went out (the clock's time), for the tests that join mid-GOP. */
  lastKeyframeAt: number | undefined;

  constructor(
    private readonly clip: Clip,
    private readonly settings: VideoSettings,
    private readonly clock: Clock = systemClock,
  ) {
    const frames = Math.round(settings.keyframeIntervalS * settings.fps);
    if (frames < 1 || frames > clip.frames.length) {
      throw new RangeError(
        `a keyframe interval of ${settings.keyframeIntervalS} s at ${settings.fps} fps needs ${frames} frames; the clip has ${clip.frames.length} (at most ${maxKeyframeIntervalS(clip)} s at ${CLIP_FPS} fps)`,
      );
    }
    this.loopLength = frames;
  }

  /** Starts the frame clock; frames go to whichever sinks there are, none included. */
  start(): void {
    if (this.cancel) return;
    this.startedAt = this.clock.now();
    this.schedule();
  }

  stop(): void {
    this.cancel?.();
    this.cancel = undefined;
    this.sinks.clear();
  }

  /** Sends every later frame to `sink`, until the returned function is called. */
  subscribe(sink: PacketSink): () => void {
    this.sinks.add(sink);
    return () => this.sinks.delete(sink);
  }

  /** A viewer lost a picture or just joined (PLI, FIR): the next frame is a keyframe, unless requests are ignored. */
  requestKeyframe(): void {
    this.counters.keyframeRequests++;
    if (this.settings.ignorePli || this.next === 0) return;
    this.counters.keyframesOnRequest++;
    this.next = 0;
  }

  private schedule(): void {
    const due = this.startedAt + ((this.sent + 1) * 1000) / this.settings.fps;
    this.cancel = this.clock.schedule(Math.max(0, due - this.clock.now()), () => {
      // Timers run late on a loaded machine: send every frame that is due, so the rate holds.
      // Half a millisecond early counts as due: the timer fires at a rounded time, and a frame it was
      // set for must not wait for the next one.
      const frames = Math.floor(((this.clock.now() - this.startedAt + 0.5) * this.settings.fps) / 1000);
      while (this.sent < frames) this.sendFrame();
      if (this.cancel) this.schedule();
    });
  }

  private sendFrame(): void {
    const frame = this.clip.frames[this.next] as (typeof this.clip.frames)[number];
    const key = this.next === 0;
    const timestamp = Math.round((this.sent * CLOCK_RATE) / this.settings.fps) >>> 0;
    // The PictureID goes on counting through the loops (15 bits).
    const payloads = packetize(this.clip.codec, frame, this.sent & 0x7fff);
    const packets: OutPacket[] = payloads.map((payload, i) => ({ payload, marker: i === payloads.length - 1, timestamp, padding: false }));
    const media = payloads.reduce((n, p) => n + p.length, 0);
    this.counters.frames++;
    this.counters.mediaBytes += media;
    if (key) {
      this.counters.keyframes++;
      this.lastKeyframeAt = this.clock.now();
    }
    packets.push(...this.padding(media, timestamp));
    this.sent++;
    this.next = (this.next + 1) % this.loopLength;
    for (const sink of this.sinks) sink(packets, key);
  }

  /** Padding-only packets that bring the bytes sent up to the bitrate (none if the clip alone exceeds it). */
  private padding(media: number, timestamp: number): OutPacket[] {
    if (this.settings.bitrateKbps <= 0) return [];
    const perFrame = (this.settings.bitrateKbps * 1000) / 8 / this.settings.fps;
    // A keyframe's excess is made up by less padding over the next second, not more.
    this.owed = Math.max(-perFrame * this.settings.fps, this.owed + perFrame - media);
    const out: OutPacket[] = [];
    while (this.owed >= MAX_PADDING) {
      out.push({ payload: PADDING, marker: false, timestamp, padding: true });
      this.owed -= MAX_PADDING;
      this.counters.paddingBytes += MAX_PADDING;
    }
    return out;
  }
}
