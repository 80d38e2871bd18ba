// One simulated dashcam: it registers as the publisher of a session over the seed API and sends its
// source's video to whoever the session needs. In a mesh session it offers to every viewer (on
// `new-peer`, and to those already there), as the browser client's publisher does; in a relay session it
// answers the offer of `switchboard`, the server's peer. Candidates trickle both ways; ICE restarts follow
// the client's rules (the offerer restarts; the other side asks with `ice-restart`).
import { RTCPeerConnection, RTCRtpCodecParameters, type RTCRtpTransceiver, RtcpPayloadSpecificFeedback, RtpHeader, RtpPacket, useFIR, useNACK, usePLI } from 'werift';
import { isNewConnection } from '../client/sdk/sdp';
import { type ChannelOptions, DeviceChannel, type DeviceIceServer, type Registration, type Signal, type StreamState } from './channel';
import type { Codec } from './clip';
import type { OutPacket, VideoSource } from './source';

/** Feedback message types of a Picture Loss Indication (RFC 4585 §6.3.1) and a Full Intra Request (RFC 5104 §4.3.1). */
const PLI_FORMAT = 1;
const FIR_FORMAT = 4;

/** A connection that stays `disconnected` this long is restarted without waiting for `failed`. */
const DISCONNECTED_GRACE_MS = 5_000;

/** The server's own peer in relay sessions. */
export const SERVER_PEER = 'switchboard';

/** Where the device is in its life, as its status lines say. */
export type DeviceState = 'starting' | 'waiting' | 'negotiating' | 'publishing' | 'reconnecting' | 'stopped' | 'failed';

export interface DeviceOptions extends ChannelOptions {
  codec: Codec;
  /** Also offer the loopback address as a candidate (a server on this machine). */
  loopback: boolean;
}

export interface DeviceCounters {
  /** Connections made, and connected now. */
  links: number;
  connected: number;
  packetsSent: number;
  bytesSent: number;
  offersSent: number;
  answersSent: number;
  iceRestarts: number;
  pli: number;
  fir: number;
}

const VIDEO_MID_CODECS = {
  vp8: () => new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90_000, payloadType: 96, rtcpFeedback: [useNACK(), usePLI(), useFIR()] }),
  h264: () =>
    new RTCRtpCodecParameters({
      mimeType: 'video/H264',
      clockRate: 90_000,
      payloadType: 102,
      rtcpFeedback: [useNACK(), usePLI(), useFIR()],
      // Constrained baseline, level 3.1, packetization-mode 1: what every browser decodes.
      parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
    }),
} satisfies Record<Codec, () => RTCRtpCodecParameters>;

/** A connection with one remote peer: a viewer (mesh) or `switchboard` (relay). */
class DeviceLink {
  readonly pc: RTCPeerConnection;
  private video: RTCRtpTransceiver | undefined;
  private held: { candidate: string; sdpMid?: string; sdpMLineIndex?: number }[] = [];
  private unsubscribe: (() => void) | undefined;
  private sequence = Math.floor(Math.random() * 0x10000);
  private readonly timestampOffset = Math.floor(Math.random() * 0x1_0000_0000);
  private closed = false;
  /** The transport whose RTCP is read for keyframe requests. */
  private watched: unknown;
  private disconnectedTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly remoteId: string,
    private readonly device: Device,
    iceServers: DeviceIceServer[],
  ) {
    this.pc = new RTCPeerConnection({
      iceServers,
      iceUseIpv6: false,
      bundlePolicy: 'max-bundle',
      iceAdditionalHostAddresses: device.options.loopback ? ['127.0.0.1'] : undefined,
      codecs: { video: [VIDEO_MID_CODECS[device.options.codec]()], audio: [] },
    });
    this.pc.onIceCandidate.subscribe((candidate) => {
      if (candidate) void this.device.signal('ice-candidate', candidate.toJSON(), remoteId);
    });
    this.pc.connectionStateChange.subscribe((state) => {
      if (this.closed) return;
      clearTimeout(this.disconnectedTimer);
      if (state === 'connected') this.watchFeedback();
      this.device.linkChanged(this, state);
      if (state === 'failed') void this.restartIce();
      // A path that went away (a dashcam changing networks) may never be declared failed: restart
      // after a grace period, as the browser client does.
      if (state === 'disconnected') {
        this.disconnectedTimer = setTimeout(() => {
          if (!this.closed && this.pc.connectionState === 'disconnected') void this.restartIce();
        }, DISCONNECTED_GRACE_MS);
      }
    });
  }

  get connected(): boolean {
    return this.pc.connectionState === 'connected';
  }

  /** Mesh: this side offers, a send-only video section. */
  async offer(iceRestart = false): Promise<void> {
    if (!this.video) this.attach(this.pc.addTransceiver('video', { direction: 'sendonly' }));
    const offer = await this.pc.createOffer({ iceRestart });
    await this.pc.setLocalDescription(offer);
    this.device.counters.offersSent++;
    await this.device.signal('offer', { type: 'offer', sdp: this.pc.localDescription?.sdp }, this.remoteId);
  }

  /** Relay (or a viewer that offers): the video section of the offer is where the device sends. */
  async answer(sdp: string): Promise<void> {
    await this.pc.setRemoteDescription({ type: 'offer', sdp });
    for (const transceiver of this.pc.getTransceivers()) {
      if (transceiver.kind === 'video' && !this.video) {
        transceiver.setDirection('sendonly');
        this.attach(transceiver);
      } else if (transceiver !== this.video) transceiver.setDirection('inactive');
    }
    await this.applyHeld();
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    this.device.counters.answersSent++;
    await this.device.signal('answer', { type: 'answer', sdp: this.pc.localDescription?.sdp }, this.remoteId);
  }

  async accept(sdp: string): Promise<void> {
    if (this.pc.signalingState !== 'have-local-offer') return;
    await this.pc.setRemoteDescription({ type: 'answer', sdp });
    await this.applyHeld();
  }

  async candidate(payload: unknown): Promise<void> {
    const c = payload as { candidate?: unknown; sdpMid?: unknown; sdpMLineIndex?: unknown } | null;
    if (typeof c?.candidate !== 'string' || c.candidate === '') return;
    const candidate = {
      candidate: c.candidate,
      sdpMid: typeof c.sdpMid === 'string' ? c.sdpMid : undefined,
      sdpMLineIndex: typeof c.sdpMLineIndex === 'number' ? c.sdpMLineIndex : undefined,
    };
    if (!this.pc.remoteDescription) this.held.push(candidate);
    else await this.pc.addIceCandidate(candidate).catch(() => undefined);
  }

  /** The offerer offers again with new credentials; in relay sessions the device asks the server to. */
  async restartIce(): Promise<void> {
    if (this.closed) return;
    this.device.counters.iceRestarts++;
    if (this.remoteId === SERVER_PEER) await this.device.signal('ice-restart', { reason: 'the connection failed' }, this.remoteId);
    else if (this.pc.signalingState === 'stable') await this.offer(true);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.disconnectedTimer);
    this.unsubscribe?.();
    void this.pc.close().catch(() => undefined);
  }

  private attach(transceiver: RTCRtpTransceiver): void {
    this.video = transceiver;
    this.unsubscribe = this.device.source.subscribe((packets) => this.send(packets));
  }

  /**
   * Keyframe requests, read from every RTCP packet of the connection: werift hands a PLI to the sender
   * only when its sender SSRC is not one it receives, and the relay's is (its receive-only section has one).
   */
  private watchFeedback(): void {
    const sender = this.video?.sender;
    const transport = sender?.dtlsTransport;
    if (!sender || !transport || this.watched === transport) return;
    this.watched = transport;
    transport.onRtcp.subscribe((rtcp) => {
      if (this.closed || rtcp.type !== RtcpPayloadSpecificFeedback.type) return;
      const feedback = (rtcp as RtcpPayloadSpecificFeedback).feedback as { count: number; mediaSsrc?: number };
      if (feedback.count === PLI_FORMAT && feedback.mediaSsrc === sender.ssrc) this.device.counters.pli++;
      // A FIR names its SSRCs in its entries, not in the header: the device has one video stream.
      else if (feedback.count === FIR_FORMAT) this.device.counters.fir++;
      else return;
      this.device.source.requestKeyframe();
    });
  }

  /** Sends a frame's packets with this connection's sequence numbers and timestamp offset (once connected). */
  private send(packets: OutPacket[]): void {
    const sender = this.video?.sender;
    if (!sender || !this.connected) return;
    for (const packet of packets) {
      const header = new RtpHeader({
        sequenceNumber: this.sequence,
        timestamp: (packet.timestamp + this.timestampOffset) >>> 0,
        marker: packet.marker,
        padding: packet.padding,
      });
      this.sequence = (this.sequence + 1) & 0xffff;
      this.device.counters.packetsSent++;
      this.device.counters.bytesSent += packet.payload.length;
      void sender.sendRtp(new RtpPacket(header, Buffer.from(packet.payload.buffer, packet.payload.byteOffset, packet.payload.byteLength))).catch(() => undefined);
    }
  }

  private async applyHeld(): Promise<void> {
    for (const candidate of this.held.splice(0)) await this.pc.addIceCandidate(candidate).catch(() => undefined);
  }
}

export interface DeviceEvents {
  /** The device's state changed, or something worth a status line happened. */
  status(device: Device, state: DeviceState, detail: string): void;
}

export class Device {
  readonly counters: DeviceCounters = { links: 0, connected: 0, packetsSent: 0, bytesSent: 0, offersSent: 0, answersSent: 0, iceRestarts: 0, pli: 0, fir: 0 };
  readonly channel: DeviceChannel;
  state: DeviceState = 'starting';
  private readonly links = new Map<string, DeviceLink>();
  private iceServers: DeviceIceServer[] = [];
  /** Events are handled one at a time, in the order they came. */
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;
  private lastLine = '';

  constructor(
    readonly options: DeviceOptions,
    readonly source: VideoSource,
    private readonly on: DeviceEvents,
  ) {
    this.channel = new DeviceChannel(options, {
      signal: (signal) => this.enqueue(() => this.handle(signal)),
      stream: (state, detail) => this.streamChanged(state, detail),
      registered: (registration) => this.enqueue(() => this.registeredAgain(registration)),
    });
  }

  get id(): string {
    return `${this.options.sessionId}/${this.options.peerId}`;
  }

  /** Remote peers with a connection, and whether each is connected. */
  connections(): Record<string, boolean> {
    return Object.fromEntries([...this.links].map(([id, link]) => [id, link.connected]));
  }

  /** POST /register (GET /iceServers from a server whose answer has none), open the stream; in mesh, offer to the viewers already there. */
  async start(): Promise<void> {
    try {
      const registration = await this.channel.register();
      this.iceServers = registration.iceServers ?? (await this.channel.iceServers());
      this.channel.open();
      this.setState('waiting', `registered as the publisher of a ${registration.mode} session; present: ${registration.peers.join(', ') || 'nobody'}`);
      if (registration.mode === 'mesh') for (const id of registration.peers) this.enqueue(() => this.link(id).offer());
    } catch (e) {
      this.setState('failed', (e as Error).message);
      throw e;
    }
  }

  /** Leaves the session (`DELETE /register`) and ends every connection. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const link of this.links.values()) link.close();
    this.links.clear();
    await this.channel.leave();
    this.setState('stopped', 'left the session');
  }

  /** @internal What a link sends to its remote peer. */
  signal(type: string, payload: unknown, target: string): Promise<void> {
    return this.channel.send(type, payload, target).catch((e) => this.status(`sending ${type} to ${target} failed: ${(e as Error).message}`));
  }

  /** @internal A link's connection state changed. */
  linkChanged(link: DeviceLink, state: string): void {
    if (this.links.get(link.remoteId) !== link) return;
    this.counters.connected = [...this.links.values()].filter((l) => l.connected).length;
    this.status(`${link.remoteId}: ${state}`);
    this.settle();
  }

  private async handle(signal: Signal): Promise<void> {
    if (this.stopped) return;
    const from = signal.senderId ?? '';
    const relay = this.channel.mode === 'relay';
    const payload = signal.payload as { sdp?: unknown } | undefined;
    switch (signal.type) {
      case 'new-peer':
        // A known id registering again is a new page: its old connection is dead.
        if (relay) return;
        this.drop(from);
        await this.link(from).offer();
        break;
      case 'peer-left':
        if (!relay) this.drop(from);
        break;
      case 'offer':
        if (typeof payload?.sdp !== 'string') break;
        // Another instance carries the relay session's media now: its offer is a new connection.
        if (isNewConnection(this.links.get(from)?.pc.remoteDescription?.sdp, payload.sdp)) {
          this.status(`${from}: a new connection (another server certificate)`);
          this.drop(from);
        }
        await this.link(from).answer(payload.sdp);
        break;
      case 'answer':
        if (typeof payload?.sdp === 'string') await this.links.get(from)?.accept(payload.sdp);
        break;
      case 'ice-candidate':
        await (this.links.get(from) ?? (relay ? this.link(from) : undefined))?.candidate(signal.payload);
        break;
      case 'ice-restart': {
        const link = this.links.get(from);
        if (link && !relay && link.pc.signalingState === 'stable') {
          this.counters.iceRestarts++;
          await link.offer(true);
        }
        break;
      }
      case 'session-closed':
        this.stopped = true;
        for (const id of [...this.links.keys()]) this.drop(id);
        this.setState('stopped', 'the server closed the session');
        return;
    }
    this.settle();
  }

  /** The registration was made anew: every connection starts over. */
  private async registeredAgain(registration: Registration): Promise<void> {
    for (const id of [...this.links.keys()]) this.drop(id);
    this.iceServers = registration.iceServers ?? this.iceServers;
    this.status(`registered again (${registration.mode}); present: ${registration.peers.join(', ') || 'nobody'}`);
    if (registration.mode === 'mesh') for (const id of registration.peers) await this.link(id).offer();
    this.settle();
  }

  private link(remoteId: string): DeviceLink {
    let link = this.links.get(remoteId);
    if (!link) {
      link = new DeviceLink(remoteId, this, this.iceServers);
      this.links.set(remoteId, link);
      this.counters.links++;
    }
    return link;
  }

  private drop(remoteId: string): void {
    const link = this.links.get(remoteId);
    if (!link) return;
    link.close();
    this.links.delete(remoteId);
    this.counters.connected = [...this.links.values()].filter((l) => l.connected).length;
  }

  private streamChanged(state: StreamState, detail: string): void {
    if (this.stopped) return;
    if (state === 'reconnecting') this.setState('reconnecting', `event stream: ${detail}`);
    else if (state === 'open' && this.state === 'reconnecting') {
      this.state = 'waiting';
      this.settle(`event stream open, ${detail}`);
    } else if (state === 'closed' && detail !== 'stopped') this.setState('stopped', detail);
  }

  /** The state that the connections make: publishing to one or more, negotiating, or waiting for a viewer. */
  private settle(detail?: string): void {
    if (this.stopped || this.state === 'reconnecting' || this.state === 'failed') return;
    const links = [...this.links.values()];
    const connected = links.filter((l) => l.connected).length;
    const relay = this.channel.mode === 'relay';
    if (connected > 0) this.setState('publishing', detail ?? (relay ? `to ${SERVER_PEER}` : `to ${connected} viewer${connected === 1 ? '' : 's'}`));
    else if (links.length > 0) this.setState('negotiating', detail ?? `with ${links.map((l) => l.remoteId).join(', ')}`);
    else this.setState('waiting', detail ?? (relay ? `for the offer of ${SERVER_PEER}` : 'for a viewer'));
  }

  /** One status line per change: of state, or of what it is about (the viewers published to, say). */
  private setState(state: DeviceState, detail: string): void {
    const line = `${state} ${detail}`;
    if (line === this.lastLine) return;
    this.lastLine = line;
    this.state = state;
    this.on.status(this, state, detail);
  }

  private status(detail: string): void {
    this.on.status(this, this.state, detail);
  }

  private enqueue(task: () => Promise<void>): void {
    this.queue = this.queue.then(task).catch((e: unknown) => this.status(`error: ${(e as Error).message}`));
  }
}
