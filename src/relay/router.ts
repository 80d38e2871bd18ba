// One relay session: the publisher's connection (the server receives), every viewer's connection (the
// server sends), and the RTP between them.
import { type GenericNack, MediaStream, type PeerConfig, type RTCRtpTransceiver, type RtpPacket } from 'werift';
import { type Cancel, type Clock, Ticker } from '../clock';
import type { Role } from '../sessions/store';
import { type AnsweringDeps, AnsweringLink, GATHER_MS, type IceParameters } from './answering';
import { type ForwarderCounters, type MediaKind, type RtpOutput, SourceTrack, TrackForwarder } from './forwarder';
import type { KeyframeCacheLimits } from './keyframe-cache';
import { type LinkMessage, OFFER_GATHER_MS, ServerLink } from './link';

/** The phases of a relay connection the server sees, in milliseconds, for metrics. */
export interface RelayObserver {
  /** The server's offer sent → the peer's answer in. */
  answered(ms: number): void;
  /** The peer's answer in → ICE connected. */
  iceConnected(ms: number): void;
  /** A viewer's connection made (its stream opened) → its first video packet written to it. */
  firstVideoPacket(ms: number): void;
}

export const noRelayObserver: RelayObserver = { answered() {}, iceConnected() {}, firstVideoPacket() {} };

export interface RouterDeps {
  clock: Clock;
  log(line: string): void;
  send(peerId: string, type: string, payload: unknown): void;
  /** werift settings of the connections that receive (from the publisher) and that send (to viewers). */
  publisherConfig: Partial<PeerConfig>;
  viewerConfig: Partial<PeerConfig>;
  publicIp?: string;
  /** Bounds of each published video track's keyframe cache (RELAY_KEYFRAME_CACHE_BYTES, RELAY_KEYFRAME_CACHE_MS). */
  keyframeCache?: KeyframeCacheLimits;
  observer?: RelayObserver;
}

/** Keyframe requests to the publisher are at most this often; one asked for sooner is sent when the time comes. */
export const KEYFRAME_INTERVAL_MS = 500;
/** How often each viewer track gets an RTCP sender report. */
const SENDER_REPORT_MS = 1000;

const KINDS: readonly MediaKind[] = ['video', 'audio'];

/**
 * Takes a connection's first offer instead of the peer's mailbox (see `SessionRouter.offerNow`): true
 * when it took it; false when it no longer waits, and the offer goes to the mailbox as any.
 */
type OfferTaker = (payload: unknown) => boolean;

interface Publisher {
  readonly id: string;
  readonly link: ServerLink;
  readonly sources: Partial<Record<MediaKind, SourceTrack>>;
  /** The SSRC of each kind, once RTP arrived: what a keyframe request names. */
  readonly ssrcs: Partial<Record<MediaKind, number>>;
}

interface Viewer {
  readonly id: string;
  readonly link: ServerLink;
  readonly forwarders: Record<MediaKind, TrackForwarder>;
  readonly transceivers: Record<MediaKind, RTCRtpTransceiver>;
}

/** Totals over the router's life, for the benchmark and logs. */
export interface RouterCounters {
  packetsIn: number;
  keyframeRequests: number;
}

export class SessionRouter {
  readonly counters: RouterCounters = { packetsIn: 0, keyframeRequests: 0 };
  private publisher: Publisher | undefined;
  private readonly viewers = new Map<string, Viewer>();
  /** Peers registered whose connection is not made yet: nothing is allocated until they can be reached. */
  private readonly waiting = new Map<string, Role>();
  /** The forwarders of each kind, in an array: the fan-out walks it for every packet. */
  private readonly fanOut: Record<MediaKind, TrackForwarder[]> = { video: [], audio: [] };
  private lastKeyframeRequest = -Infinity;
  private pendingKeyframe: Cancel | undefined;
  private readonly reports: Ticker;
  /** What the forwarders of viewers that left sent: the totals only ever grow. */
  private readonly departed: ForwarderCounters = { packets: 0, bytes: 0, retransmitted: 0, dropped: 0, replays: 0 };
  private readonly observer: RelayObserver;
  /** Per connection: told when the peer's answer comes in (the first, of the first offer). */
  private readonly answerTimers = new WeakMap<ServerLink, () => void>();

  constructor(
    readonly sessionId: string,
    private readonly deps: RouterDeps,
  ) {
    this.reports = new Ticker(deps.clock, SENDER_REPORT_MS, () => this.sendReports());
    this.observer = deps.observer ?? noRelayObserver;
  }

  get viewerCount(): number {
    return this.viewers.size;
  }

  /** What the viewers' forwarders sent (packets, payload bytes), retransmitted and dropped, and the cached groups replayed, over the router's life. */
  forwarded(): ForwarderCounters {
    const totals = { ...this.departed };
    for (const viewer of this.viewers.values()) {
      for (const kind of KINDS) addCounters(totals, viewer.forwarders[kind].counters);
    }
    return totals;
  }

  /** Connections open now (publisher and viewers): each holds a UDP socket and a DTLS certificate. */
  get linkCount(): number {
    return this.viewers.size + (this.publisher ? 1 : 0);
  }

  /**
   * A peer (re)joined: whatever connection it had is dead. Its new one waits for `reachable`: a
   * registration that never opens a stream costs no socket, no certificate, no werift connection.
   */
  join(peerId: string, role: Role): void {
    this.leave(peerId);
    this.waiting.set(peerId, role);
  }

  /**
   * The peer can hear the server now (its event stream is open; a WHIP/WHEP peer's HTTP exchange is
   * its signalling): its connection is made, and the server's offer sent, once per incarnation. `role`
   * is the one `join` gave, or, for a peer that never joined, the one to give it. False when the peer
   * already has its connection (a stream that reconnects) or is not in the session.
   */
  reachable(peerId: string, role?: Role, take?: OfferTaker): boolean {
    if (this.publisher?.id === peerId || this.viewers.has(peerId)) return false;
    const as = this.waiting.get(peerId) ?? role;
    if (as === undefined) return false;
    this.waiting.delete(peerId);
    if (as === 'publisher') this.addPublisher(peerId, undefined, take);
    else this.addViewer(peerId, undefined, take);
    return true;
  }

  /**
   * `reachable` for a peer whose registration's answer is to carry the server's offer: its connection
   * is made now, and its first offer resolves this rather than going to its mailbox. Undefined when
   * the peer is not waiting for a connection (it has one, or is not in the session), or when the offer
   * takes over `waitMs`: it then goes to the mailbox as any, and the peer reads it on its stream.
   */
  offerNow(peerId: string, waitMs: number): Promise<unknown> {
    if (!this.waiting.has(peerId)) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      let waiting = true;
      const giveUp = this.deps.clock.schedule(waitMs, () => {
        waiting = false;
        resolve(undefined);
      });
      this.reachable(peerId, undefined, (payload) => {
        if (!waiting) return false;
        giveUp();
        resolve(payload);
        return true;
      });
    });
  }

  leave(peerId: string): void {
    this.waiting.delete(peerId);
    if (this.publisher?.id === peerId) {
      // Viewers keep their connections and senders: they go quiet until a publisher sends again.
      this.dropPublisher();
      this.deps.log(`relay: session ${this.sessionId}: publisher ${peerId} left; ${this.viewers.size} viewer(s) wait`);
      return;
    }
    const viewer = this.viewers.get(peerId);
    if (!viewer) return;
    this.viewers.delete(peerId);
    for (const kind of KINDS) {
      addCounters(this.departed, viewer.forwarders[kind].counters);
      const list = this.fanOut[kind];
      const at = list.indexOf(viewer.forwarders[kind]);
      if (at >= 0) list.splice(at, 1);
    }
    viewer.link.close();
    if (this.viewers.size === 0) this.reports.stop();
  }

  /**
   * A peer that brings its own offer (WHIP, WHEP): a new connection, with the same forwarding as any
   * peer's, answers it. Resolves with the answer; rejects when the offer cannot be applied.
   */
  answer(peerId: string, role: Role, offerSdp: string, onState?: (state: string) => void, stream?: AnsweringDeps['send']): Promise<string> {
    this.leave(peerId);
    const config = role === 'publisher' ? this.deps.publisherConfig : this.deps.viewerConfig;
    const { clock } = this.deps;
    const offeredAt = clock.now();
    // A peer with a stream hears of candidates found later: its answer need not wait for them.
    const gatherMs = stream ? OFFER_GATHER_MS : GATHER_MS;
    const link = new AnsweringLink(peerId, config, { clock, gatherMs, log: this.deps.log, publicIp: this.deps.publicIp, onState, send: stream });
    if (role === 'publisher') this.addPublisher(peerId, link);
    else this.addViewer(peerId, link);
    // The peer's offer in → the server's answer out, then → ICE connected: the phases of a server offer's.
    const answered = this.timeToConnected(link);
    return link.answer(offerSdp).then((sdp) => {
      answered(clock.now() - offeredAt);
      return sdp;
    });
  }

  /** An ICE restart asked for by a peer that made its own offer; undefined when it has no such connection. */
  restartIce(peerId: string, remote: Pick<IceParameters, 'ufrag' | 'pwd'>): Promise<IceParameters> | undefined {
    const link = this.publisher?.id === peerId ? this.publisher.link : this.viewers.get(peerId)?.link;
    return link instanceof AnsweringLink ? link.restart(remote) : undefined;
  }

  /** What the peer sent to `switchboard`. */
  message(peerId: string, message: LinkMessage): boolean {
    if (message.type === 'offer') return this.offered(peerId, message.sdp);
    const link = this.publisher?.id === peerId ? this.publisher.link : this.viewers.get(peerId)?.link;
    if (!link) return false;
    if (message.type === 'answer') this.answerTimers.get(link)?.();
    link.handle(message);
    return true;
  }

  /**
   * A registered peer's own offer (`offer` to switchboard), answered with an `answer` event over its
   * stream, as a WHEP player's is in its POST's answer: the peer, as a full ICE agent with the server's
   * candidates in hand, checks at once, and nothing waits for the server's offer to reach a page still
   * loading. Its first offer makes its connection, and the server offers nothing of its own (an offer of
   * the server's still unanswered gives way: the offering peer ignores it); a later one renegotiates
   * the connection it has, whoever made it (an ICE restart).
   */
  private offered(peerId: string, sdp: string): boolean {
    const publisher = this.publisher?.id === peerId;
    const current = publisher ? this.publisher?.link : this.viewers.get(peerId)?.link;
    const send = (type: string, payload: unknown) => this.deps.send(peerId, type, payload);
    const answered = (answer: Promise<string>) =>
      answer.then(
        (answerSdp) => send('answer', { type: 'answer', sdp: answerSdp }),
        (e: unknown) => this.deps.log(`relay: session ${this.sessionId}: the offer of ${peerId} could not be answered: ${(e as Error).message}`),
      );
    // An answering link's connection takes every offer; one the server offered, any but while its own is unanswered.
    if (current instanceof AnsweringLink || (current && current.pc.signalingState !== 'have-local-offer')) {
      void answered(current.answer(sdp));
      return true;
    }
    const role = current ? (publisher ? 'publisher' : 'viewer') : this.waiting.get(peerId);
    if (role === undefined) return false;
    void answered(this.answer(peerId, role, sdp, undefined, send));
    return true;
  }

  close(): void {
    this.pendingKeyframe?.();
    this.pendingKeyframe = undefined;
    this.reports.stop();
    this.dropPublisher();
    this.waiting.clear();
    for (const id of [...this.viewers.keys()]) this.leave(id);
  }

  private dropPublisher(): void {
    if (!this.publisher) return;
    this.publisher.link.close();
    for (const kind of KINDS) this.publisher.sources[kind]?.close();
    this.publisher = undefined;
  }

  /**
   * Asks the publisher for a keyframe: at once if none was asked for in the last KEYFRAME_INTERVAL_MS,
   * otherwise once that interval is over. However many viewers ask, the publisher gets at most one
   * request per interval: a viewer losing packets cannot flood it.
   */
  requestKeyframe(): void {
    if (this.pendingKeyframe || !this.publisher) return;
    const wait = this.lastKeyframeRequest + KEYFRAME_INTERVAL_MS - this.deps.clock.now();
    if (wait <= 0) {
      this.sendKeyframeRequest();
      return;
    }
    this.pendingKeyframe = this.deps.clock.schedule(wait, () => {
      this.pendingKeyframe = undefined;
      this.sendKeyframeRequest();
    });
  }

  private sendKeyframeRequest(): void {
    const publisher = this.publisher;
    const ssrc = publisher?.ssrcs.video;
    if (!publisher || ssrc === undefined) return;
    const transceiver = publisher.link.pc.getTransceivers().find((t) => t.kind === 'video');
    if (!transceiver) return;
    this.lastKeyframeRequest = this.deps.clock.now();
    this.counters.keyframeRequests++;
    void transceiver.receiver.sendRtcpPLI(ssrc);
  }

  /**
   * A connection with the peer, timed: its first offer sent → the answer in → ICE connected, once per
   * connection (an ICE restart is not a join). `take`, when given, is offered the first offer first.
   */
  private link(peerId: string, config: Partial<PeerConfig>, take?: OfferTaker): ServerLink {
    const { clock } = this.deps;
    let offeredAt: number | undefined;
    const send = (type: string, payload: unknown) => {
      if (type === 'offer') {
        offeredAt ??= clock.now();
        const taker = take;
        take = undefined;
        if (taker?.(payload)) return;
      }
      this.deps.send(peerId, type, payload);
    };
    const link = new ServerLink(peerId, config, { send, clock, log: this.deps.log, publicIp: this.deps.publicIp });
    const answered = this.timeToConnected(link);
    this.answerTimers.set(link, () => {
      if (offeredAt !== undefined) answered(clock.now() - offeredAt);
    });
    return link;
  }

  /**
   * Times a connection from its answer (the peer's, or the server's to the peer's offer) to ICE
   * connected, once per connection (an ICE restart is not a join). The function it returns is told,
   * once, how long the offer waited for that answer.
   */
  private timeToConnected(link: ServerLink): (offerToAnswerMs: number) => void {
    const { clock } = this.deps;
    let answeredAt: number | undefined;
    let connected = false;
    link.pc.iceConnectionStateChange.subscribe((state) => {
      if (state !== 'connected' || answeredAt === undefined || connected) return;
      connected = true;
      this.observer.iceConnected(clock.now() - answeredAt);
    });
    return (ms) => {
      if (answeredAt !== undefined) return;
      answeredAt = clock.now();
      this.observer.answered(ms);
    };
  }

  /** `answering`: the peer's own offer is to be answered; otherwise the server offers (to `take` first, when given). */
  private addPublisher(peerId: string, answering?: AnsweringLink, take?: OfferTaker): void {
    const link = answering ?? this.link(peerId, this.deps.publisherConfig, take);
    const publisher: Publisher = { id: peerId, link, sources: {}, ssrcs: {} };
    this.publisher = publisher;
    for (const kind of KINDS) link.pc.addTransceiver(kind, { direction: 'recvonly' });
    link.pc.onTrack.subscribe((track) => {
      const kind = track.kind as MediaKind;
      const transceiver = link.pc.getTransceivers().find((t) => t.receiver.tracks.includes(track)) ?? link.pc.getTransceivers().find((t) => t.kind === kind);
      const codecs = transceiver ? ServerLink.negotiated(transceiver) : [];
      const source = new SourceTrack(kind, codecs, codecs[0]?.clockRate ?? (kind === 'video' ? 90_000 : 48_000), this.deps.keyframeCache);
      publisher.sources[kind]?.close();
      publisher.sources[kind] = source;
      this.deps.log(`relay: session ${this.sessionId}: ${peerId} sends ${kind} (${codecs.map((c) => c.mimeType).join(', ') || 'no codec'})`);
      track.onReceiveRtp.subscribe((packet) => this.route(publisher, source, packet));
    });
    link.pc.connectionStateChange.subscribe((state) => {
      this.deps.log(`relay: session ${this.sessionId}: publisher ${peerId} ${state}`);
    });
    if (!answering) link.offer();
  }

  /** The hot path: one packet from the publisher to every viewer of its kind. */
  private route(publisher: Publisher, source: SourceTrack, packet: RtpPacket): void {
    if (this.publisher !== publisher) return;
    this.counters.packetsIn++;
    const kind = source.kind;
    if (publisher.ssrcs[kind] === undefined) {
      publisher.ssrcs[kind] = packet.header.ssrc;
      if (kind === 'video') this.requestKeyframe();
    }
    const now = this.deps.clock.now();
    source.remember(packet, now);
    const list = this.fanOut[kind];
    for (let i = 0; i < list.length; i++) (list[i] as TrackForwarder).forward(packet, source, now);
  }

  private addViewer(peerId: string, answering?: AnsweringLink, take?: OfferTaker): void {
    const link = answering ?? this.link(peerId, this.deps.viewerConfig, take);
    const createdAt = this.deps.clock.now();
    const stream = new MediaStream();
    const transceivers = {} as Record<MediaKind, RTCRtpTransceiver>;
    const forwarders = {} as Record<MediaKind, TrackForwarder>;
    for (const kind of KINDS) {
      const transceiver = link.pc.addTransceiver(kind, { direction: 'sendonly', streams: [stream] });
      transceivers[kind] = transceiver;
      const forwarder = new TrackForwarder(
        kind,
        senderOutput(transceiver),
        this.deps.clock,
        () => this.requestKeyframe(),
        (mime) => this.deps.log(`relay: session ${this.sessionId}: viewer ${peerId} cannot take ${mime}; it gets no ${kind}`),
        kind === 'video' ? () => this.observer.firstVideoPacket(this.deps.clock.now() - createdAt) : undefined,
      );
      forwarders[kind] = forwarder;
      transceiver.sender.onGenericNack.subscribe((nack: GenericNack) => forwarder.retransmit(nack.lost));
      transceiver.sender.onPictureLossIndication.subscribe(() => this.requestKeyframe());
    }
    const viewer: Viewer = { id: peerId, link, forwarders, transceivers };
    this.viewers.set(peerId, viewer);
    link.pc.signalingStateChange.subscribe((state) => {
      if (state !== 'stable') return;
      for (const kind of KINDS) forwarders[kind].setViewerCodecs(ServerLink.negotiated(transceivers[kind]));
      this.prime(viewer);
    });
    link.pc.connectionStateChange.subscribe((state) => {
      if (state === 'connected' && this.viewers.get(peerId) === viewer) {
        // Joining mid-stream: the cached pictures since the last keyframe at once, and a keyframe asked
        // for all the same (a publisher that honours it gives a fresh picture, and a smaller group to replay).
        this.prime(viewer);
        this.requestKeyframe();
      }
    });
    for (const kind of KINDS) this.fanOut[kind].push(forwarders[kind]);
    this.reports.start();
    if (!answering) link.offer();
  }

  /** Replays the publisher's cached video to a viewer that waits for a keyframe, once it can take it. */
  private prime(viewer: Viewer): void {
    const source = this.publisher?.sources.video;
    if (source && this.viewers.get(viewer.id) === viewer) viewer.forwarders.video.prime(source, this.deps.clock.now());
  }

  private sendReports(): void {
    for (const viewer of this.viewers.values()) {
      for (const kind of KINDS) {
        const report = viewer.forwarders[kind].senderReport();
        if (report) senderOutput(viewer.transceivers[kind]).sendRtcp([report]);
      }
    }
  }
}

function addCounters(totals: ForwarderCounters, c: ForwarderCounters): void {
  totals.packets += c.packets;
  totals.bytes += c.bytes;
  totals.retransmitted += c.retransmitted;
  totals.dropped += c.dropped;
  totals.replays += c.replays;
}

/** A viewer's sender as a forwarder writes to it: straight to its DTLS transport, past werift's per-packet rewriting. */
function senderOutput(transceiver: RTCRtpTransceiver): RtpOutput {
  const sender = transceiver.sender;
  return {
    ssrc: sender.ssrc,
    get ready() {
      const transport = sender.dtlsTransport;
      return transport !== undefined && transport.state === 'connected' && transport.srtp !== undefined;
    },
    send: (header, payload) => sender.dtlsTransport.sendRtp(payload, header),
    sendRtcp: (packets) => {
      sender.dtlsTransport.sendRtcp(packets).catch(() => undefined);
    },
  };
}
