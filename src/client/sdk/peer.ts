// One RTCPeerConnection with one remote peer: perfect negotiation (either side may offer; on a
// collision the polite side gives way), trickle ICE with candidates held until the remote description is
// there, ICE restart when the connection fails, and the reasons it failed.
import { readStats, type StatsSnapshot } from './stats';
import type { CandidateError, PeerStats } from './switchboard';
import { TimelineRecorder } from './timeline';

export interface PeerLinkOptions {
  remoteId: string;
  /** This side makes the first offer (with its media); the other side answers it. */
  offers: boolean;
  /**
   * This side may offer later too (an ICE restart): both sides of a mesh connection may. The server's peer
   * in a relay session takes no offers: there, this side asks it to restart (`ice-restart`).
   */
  mayOffer: boolean;
  /** On an offer collision (both sides offered), the polite side gives way; the other ignores the offer. */
  polite: boolean;
  config: RTCConfiguration;
  /** The publisher's media, sent to this peer; a viewer sends nothing. */
  media?: MediaStream;
  /** The video codec to send, first in the order offered or answered (`h264`, `vp8`). */
  codec?: string;
  send(type: string, payload: unknown): Promise<void>;
  log(text: string): void;
  /** Something shown about this link changed. */
  changed(): void;
  /** Remote media arrived. */
  track(stream: MediaStream): void;
  /** Fresh ICE servers for a restart (TURN credentials may have expired). */
  iceServers(): Promise<RTCIceServer[]>;
  /** The zero of this link's timeline (ms since the epoch), and when the registration it follows was answered. */
  startedAt: number;
  registeredAt?: number;
}

/** A connection that stays `disconnected` this long is restarted, without waiting for `failed`. */
const DISCONNECTED_GRACE_MS = 5_000;
/** A restart that has not reconnected by then is tried again: its state may never change again by itself. */
const RESTART_TIMEOUT_MS = 12_000;
/** Restarts in a row before giving up until something changes. */
const MAX_RESTARTS = 3;

const emptyCounts = () => ({ host: 0, srflx: 0, prflx: 0, relay: 0 }) as Record<string, number>;

export class PeerLink {
  readonly pc: RTCPeerConnection;
  readonly remoteId: string;
  /** Candidates that came before the remote description they belong to. */
  private held: RTCIceCandidateInit[] = [];
  readonly localCandidates = emptyCounts();
  readonly remoteCandidates = emptyCounts();
  /** Each remote candidate counts once, whether it came in the description, trickled, or both. */
  private readonly heardCandidates = new Set<string>();
  readonly candidateErrors: CandidateError[] = [];
  readonly counts = { offersSent: 0, offersReceived: 0, answersSent: 0, answersReceived: 0, iceRestarts: 0 };
  /** Why the connection failed, in plain words; cleared when it connects. */
  failure: string | undefined;
  stats: PeerStats | undefined;
  readonly timeline: TimelineRecorder;
  /** Between createOffer and setLocalDescription: an offer arriving then is a collision. */
  private makingOffer = false;
  private snapshot: StatsSnapshot | undefined;
  private disconnectedTimer: ReturnType<typeof setTimeout> | undefined;
  private restartsInARow = 0;
  private restartTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  constructor(private readonly options: PeerLinkOptions) {
    this.remoteId = options.remoteId;
    const pc = new RTCPeerConnection(options.config);
    this.pc = pc;
    this.timeline = new TimelineRecorder(options.startedAt, options.registeredAt);
    // A side that sends media (a publisher) receives none: it has no first packet or frame to wait for.
    this.timeline.watch(pc, !options.media, () => options.changed());
    const { media } = options;
    if (media && options.offers) for (const track of media.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
    // Answering with media (a publisher in a relay session): tracks added this way take the offer's
    // receive-only sections, and the answer sends on them.
    else if (media) for (const track of media.getTracks()) pc.addTrack(track, media);
    if (options.offers) this.preferCodec();

    pc.onicecandidate = (e) => {
      if (!e.candidate) {
        options.log(`${this.remoteId}: ICE gathering complete (${describeCounts(this.localCandidates)})`);
        options.changed();
        return;
      }
      const type = e.candidate.type ?? candidateType(e.candidate.candidate);
      if (type) this.localCandidates[type] = (this.localCandidates[type] ?? 0) + 1;
      this.signal('ice-candidate', e.candidate.toJSON());
      options.changed();
    };
    pc.onicecandidateerror = (e) => {
      // Chromium also reports STUN timeouts on interfaces with no route (code 701): noise, unless nothing else works.
      const error = { url: e.url, errorCode: e.errorCode, errorText: e.errorText };
      this.candidateErrors.push(error);
      if (e.errorCode !== 701) options.log(`${this.remoteId}: ${describeCandidateError(error)}`);
      options.changed();
    };
    pc.oniceconnectionstatechange = () => {
      options.log(`${this.remoteId}: ICE ${pc.iceConnectionState}`);
      options.changed();
    };
    pc.onconnectionstatechange = () => this.connectionChanged();
    pc.onsignalingstatechange = () => options.changed();
    pc.ontrack = (e) => options.track(e.streams[0] ?? new MediaStream([e.track]));
  }

  /** Creates and sends an offer (with new ICE credentials for a restart). */
  async offer(iceRestart = false): Promise<void> {
    const { pc } = this;
    // The other side's offer is being answered (it came while this side prepared its own, a restart
    // fetching new ICE servers, say): this offer follows once that exchange is done.
    await this.untilAnswered();
    if (this.closed) return;
    this.makingOffer = true;
    try {
      await pc.setLocalDescription(await pc.createOffer({ iceRestart }));
    } finally {
      this.makingOffer = false;
    }
    this.counts.offersSent++;
    this.timeline.mark('offer');
    await this.signal('offer', pc.localDescription);
  }

  /** Resolves once the connection is not answering an offer of the other side. */
  private untilAnswered(): Promise<void> {
    const { pc } = this;
    if (pc.signalingState !== 'have-remote-offer') return Promise.resolve();
    return new Promise((resolve) => {
      const settled = () => {
        if (pc.signalingState === 'have-remote-offer') return;
        pc.removeEventListener('signalingstatechange', settled);
        resolve();
      };
      pc.addEventListener('signalingstatechange', settled);
    });
  }

  async handleOffer(description: RTCSessionDescriptionInit): Promise<void> {
    const { pc } = this;
    this.counts.offersReceived++;
    this.timeline.mark('offer');
    if (this.makingOffer || pc.signalingState !== 'stable') {
      if (!this.options.polite) {
        this.options.log(`${this.remoteId}: both sides offered at once; keeping ours, ignoring theirs`);
        return;
      }
      this.options.log(`${this.remoteId}: both sides offered at once; taking theirs`);
      if (pc.signalingState !== 'stable') await pc.setLocalDescription({ type: 'rollback' });
    }
    await pc.setRemoteDescription(description);
    this.countOffered(description.sdp);
    await this.applyHeld();
    await pc.setLocalDescription(await pc.createAnswer());
    this.counts.answersSent++;
    this.timeline.mark('answer');
    await this.signal('answer', pc.localDescription);
  }

  async handleAnswer(description: RTCSessionDescriptionInit): Promise<void> {
    const { pc } = this;
    this.counts.answersReceived++;
    if (pc.signalingState !== 'have-local-offer') {
      this.options.log(`${this.remoteId}: ignored an answer that matches no offer (state ${pc.signalingState})`);
      return;
    }
    this.timeline.mark('answer');
    await pc.setRemoteDescription(description);
    this.countOffered(description.sdp);
    await this.applyHeld();
  }

  /** The candidates a description carries (the relay's offer has the server's). */
  private countOffered(sdp: string | undefined): void {
    for (const match of (sdp ?? '').matchAll(/^a=(candidate:[^\r\n]*)/gm)) this.heard(match[1] ?? '');
  }

  private heard(candidate: string): void {
    const type = candidateType(candidate);
    if (!type || this.heardCandidates.has(candidate)) return;
    this.heardCandidates.add(candidate);
    this.remoteCandidates[type] = (this.remoteCandidates[type] ?? 0) + 1;
  }

  async handleCandidate(candidate: RTCIceCandidateInit): Promise<void> {
    this.heard(candidate.candidate ?? '');
    if (!this.pc.remoteDescription) {
      this.held.push(candidate);
      return;
    }
    await this.addCandidate(candidate);
  }

  /**
   * Restarts ICE: a new offer with new credentials, or a request that the other side offer one
   * (`ice-restart`). On its own the side that offered first restarts and the other asks it to, so that
   * both sides do not offer at once; `offer` makes this side offer, where the other side takes offers.
   */
  async restartIce(reason: string, offer = this.options.offers): Promise<void> {
    if (this.closed) return;
    if (this.restartsInARow >= MAX_RESTARTS) {
      this.options.log(`${this.remoteId}: ${MAX_RESTARTS} ICE restarts did not help; giving up on this connection`);
      return;
    }
    this.restartsInARow++;
    this.counts.iceRestarts++;
    this.options.log(`${this.remoteId}: restarting ICE (${reason})`);
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      if (this.closed || this.pc.connectionState === 'connected') return;
      void this.restartIce(`not connected ${RESTART_TIMEOUT_MS / 1000} s after restarting`).catch((e) =>
        this.options.log(`${this.remoteId}: ICE restart failed: ${(e as Error).message}`),
      );
    }, RESTART_TIMEOUT_MS);
    try {
      const iceServers = await this.options.iceServers();
      this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers });
    } catch (e) {
      this.options.log(`${this.remoteId}: could not renew the ICE servers (${(e as Error).message}); restarting with the old ones`);
    }
    if (offer && this.options.mayOffer) await this.offer(true);
    else await this.signal('ice-restart', { reason });
  }

  /** Refreshes `stats`; called about once a second while the link is shown. */
  async poll(): Promise<void> {
    if (this.closed) return;
    const { stats, snapshot } = await readStats(this.pc, this.snapshot);
    this.stats = stats;
    this.snapshot = snapshot;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.timeline.stop();
    clearTimeout(this.disconnectedTimer);
    clearTimeout(this.restartTimer);
    this.pc.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private connectionChanged(): void {
    const { pc, options } = this;
    const state = pc.connectionState;
    options.log(`${this.remoteId}: connection ${state}`);
    clearTimeout(this.disconnectedTimer);
    if (state === 'connected') {
      clearTimeout(this.restartTimer);
      this.failure = undefined;
      this.restartsInARow = 0;
    } else if (state === 'failed') {
      this.failure = this.explainFailure();
      options.log(`${this.remoteId}: ICE failed: ${this.failure}`);
      void this.restartIce('the connection failed').catch((e) => options.log(`${this.remoteId}: ICE restart failed: ${(e as Error).message}`));
    } else if (state === 'disconnected') {
      this.disconnectedTimer = setTimeout(() => {
        if (pc.connectionState !== 'disconnected') return;
        void this.restartIce(`disconnected for ${DISCONNECTED_GRACE_MS / 1000} s`).catch((e) => options.log(`${this.remoteId}: ICE restart failed: ${(e as Error).message}`));
      }, DISCONNECTED_GRACE_MS);
    }
    options.changed();
  }

  /** Why no candidate pair worked, from what this side saw. */
  explainFailure(): string {
    const relayOnly = this.pc.getConfiguration().iceTransportPolicy === 'relay';
    const turnErrors = this.candidateErrors.filter((e) => e.errorCode !== 701);
    const reasons: string[] = [];
    if (relayOnly && this.localCandidates.relay === 0) {
      reasons.push('relay only was asked for, but the TURN server gave no relay address');
    }
    for (const error of dedupe(turnErrors.map(describeCandidateError))) reasons.push(error);
    const remote = Object.values(this.remoteCandidates).reduce((a, b) => a + b, 0);
    if (remote === 0) reasons.push(`${this.remoteId} sent no ICE candidates`);
    if (reasons.length === 0) {
      reasons.push(
        `no candidate pair worked (here: ${describeCounts(this.localCandidates)}; ${this.remoteId}: ${describeCounts(this.remoteCandidates)}); ` +
          'a firewall or NAT blocks the direct path, and a TURN server (GET /iceServers) would get around it',
      );
    }
    return reasons.join('; ');
  }

  /**
   * Puts the codec asked for first on the video transceivers this side offers, where the browser has it.
   * An answerer sends the offer's first codec that it has whatever its own order, so answering (a
   * publisher in a relay session) leaves the choice to the offer.
   */
  private preferCodec(): void {
    const name = this.options.codec?.toLowerCase();
    if (!name || typeof RTCRtpSender.getCapabilities !== 'function') return;
    const codecs = RTCRtpSender.getCapabilities('video')?.codecs ?? [];
    const preferred = codecs.filter((c) => c.mimeType.toLowerCase() === `video/${name}`);
    if (preferred.length === 0) return;
    const ordered = [...preferred, ...codecs.filter((c) => !preferred.includes(c))];
    for (const transceiver of this.pc.getTransceivers()) {
      if (transceiver.sender.track?.kind !== 'video' || typeof transceiver.setCodecPreferences !== 'function') continue;
      try {
        transceiver.setCodecPreferences(ordered);
      } catch (e) {
        this.options.log(`${this.remoteId}: cannot prefer ${name}: ${(e as Error).message}`);
      }
    }
  }

  private async applyHeld(): Promise<void> {
    for (const candidate of this.held.splice(0)) await this.addCandidate(candidate);
  }

  private async addCandidate(candidate: RTCIceCandidateInit): Promise<void> {
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (e) {
      // A candidate of an ICE generation already replaced by a restart, typically: harmless.
      this.options.log(`${this.remoteId}: could not use a candidate (${(e as Error).message})`);
    }
  }

  private signal(type: string, payload: unknown): Promise<void> {
    return this.options.send(type, payload).catch((e) => this.options.log(`${this.remoteId}: sending ${type} failed: ${(e as Error).message}`));
  }
}

/** The `typ` field of an SDP candidate line. */
export function candidateType(line: string): string | undefined {
  return / typ (host|srflx|prflx|relay)\b/.exec(line)?.[1];
}

function describeCounts(counts: Record<string, number>): string {
  return Object.entries(counts)
    .map(([type, n]) => `${type} ${n}`)
    .join(', ');
}

function describeCandidateError(e: CandidateError): string {
  const server = e.url || 'an ICE server';
  if (e.errorCode === 401) return `the TURN server ${server} refused the credentials (401 ${e.errorText || 'Unauthorized'}): check TURN_SECRET or the TURN username/password`;
  if (e.errorCode === 701) return `${server} did not answer (701 ${e.errorText})`;
  return `${server} answered ${e.errorCode} ${e.errorText}`;
}

function dedupe(items: string[]): string[] {
  return [...new Set(items)];
}
