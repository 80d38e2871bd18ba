// One role in one session, following the seed: GET /iceServers, POST /register, EventSource on /events;
// on new-peer the publisher offers, the viewer answers, and candidates trickle both ways. One PeerLink per
// remote peer: a publisher serves every viewer of the session.
import { type LocalMedia, openMedia, type Source } from './media';
import { type CandidateError, PeerLink } from './peer';
import { ApiError, type SessionMode, type Signal, SignalChannel, type StreamState, type Transport, UnreachableError } from './signalling';
import type { SelectedPair } from './stats';
import type { Role, View } from './ui';

/** What the page shows about one connection; also readable by scripts as `window.switchboard.peers[id]`. */
export interface PeerStatus {
  connectionState: RTCPeerConnectionState;
  iceConnectionState: RTCIceConnectionState;
  iceGatheringState: RTCIceGatheringState;
  signalingState: RTCSignalingState;
  pair?: SelectedPair;
  rttMs?: number;
  inKbps: number;
  outKbps: number;
  framesDecoded: number;
  framesSent: number;
  localCandidates: Record<string, number>;
  remoteCandidates: Record<string, number>;
  candidateErrors: CandidateError[];
  failure?: string;
  offersSent: number;
  offersReceived: number;
  answersSent: number;
  answersReceived: number;
  iceRestarts: number;
}

/** The page's state, published as `window.switchboard`. */
export interface ClientStatus {
  phase: 'idle' | 'starting' | 'live' | 'ended' | 'failed';
  role?: Role;
  transport?: Transport;
  sessionId?: string;
  peerId?: string;
  /** mesh: media peer to peer; relay: through the server, the one remote peer being `switchboard`. */
  mode?: SessionMode;
  /** In a relay session, the publisher a viewer watches through the server, while it is there. */
  publisher?: string;
  relay: boolean;
  /** What the publisher actually sends. */
  source?: Source;
  stream: StreamState;
  /** Event stream reconnects that resumed with Last-Event-ID. */
  resumes: number;
  reRegistrations: number;
  error?: string;
  peers: Record<string, PeerStatus>;
}

export interface SessionOptions {
  role: Role;
  /** SSE and POST (the seed's), or one WebSocket. */
  transport: Transport;
  sessionId: string;
  peerId: string;
  /** The mode asked for when this page creates the session; the server's answer decides. */
  mode?: SessionMode;
  /** The video codec a publisher prefers (`h264`, `vp8`), where the browser has it. */
  codec?: string;
  relay: boolean;
  source: Source;
  view: View;
  status: ClientStatus;
  /** Called once when the session is over, whatever ended it. */
  ended(): void;
}

const STATS_INTERVAL_MS = 1000;

/** The server's own peer in relay sessions. */
export const SERVER_PEER = 'switchboard';

export class Session {
  private readonly links = new Map<string, PeerLink>();
  private readonly channel: SignalChannel;
  private media: LocalMedia | undefined;
  private iceServer: RTCIceServer | undefined;
  /** Events are handled one at a time, in the order they arrived. */
  private queue: Promise<void> = Promise.resolve();
  private statsTimer: ReturnType<typeof setInterval> | undefined;
  private stopped = false;

  constructor(private readonly options: SessionOptions) {
    const { sessionId, peerId, status } = options;
    this.channel = new SignalChannel(
      sessionId,
      peerId,
      {
        signal: (signal) => this.enqueue(() => this.handle(signal)),
        stream: (state, detail) => this.streamChanged(state, detail),
        registered: (peers) => this.enqueue(() => this.registeredAgain(peers)),
        log: (text) => this.log(text),
      },
      '',
      options.transport,
      { mode: options.mode, role: options.role },
    );
    Object.assign(status, {
      phase: 'starting',
      role: options.role,
      transport: options.transport,
      sessionId,
      peerId,
      mode: options.mode,
      publisher: undefined,
      relay: options.relay,
      error: undefined,
      peers: {},
    });
  }

  async start(): Promise<void> {
    const { role, sessionId, peerId, view, status } = this.options;
    view.setRunning(role);
    view.setStatus(`Starting: asking ${location.host} for ICE servers…`);
    this.log('→ GET /iceServers');
    this.iceServer = await this.channel.iceServers();
    this.log(`ICE servers: ${[this.iceServer.urls].flat().join(' ')}${this.iceServer.username ? ' (with TURN credentials)' : ''}`);

    if (role === 'publish') {
      view.setStatus('Starting: opening the camera…');
      this.media = await openMedia(this.options.source);
      status.source = this.media.source;
      if (this.media.notice) {
        this.log(this.media.notice);
        view.showError(this.media.notice);
      }
      view.showLocal(this.media.stream, `sending ${this.media.source === 'camera' ? 'camera and microphone' : this.media.source}`);
    } else {
      view.showLocal(undefined, 'receiving only');
    }
    if (this.stopped) return;

    this.log(`→ POST /register/${sessionId}/${peerId}`);
    const peers = await this.channel.register();
    if (this.stopped) return;
    this.log(`registered as ${peerId} in session ${sessionId}; already there: ${peers.join(', ') || 'nobody'}`);
    status.mode = this.channel.mode;
    if (this.relayed) {
      this.log(`relay session: media goes through the server; ${SERVER_PEER} will offer`);
      if (role === 'view') status.publisher = peers[0];
    }
    this.channel.open();
    status.phase = 'live';
    // The server sends new-peer to the others, not to the one registering: a publisher that arrives
    // (or comes back after a reload) offers to those already there. In a relay session the server offers.
    if (role === 'publish' && !this.relayed) for (const id of peers) this.enqueue(() => this.offerTo(id));
    if (role === 'publish') view.showShareLink(viewerLink(sessionId, this.channel.mode));
    this.statsTimer = setInterval(() => void this.poll(), STATS_INTERVAL_MS);
    this.showSummary();
  }

  /** Ends everything. `leave` tells the server (DELETE /register) unless the id is no longer ours. */
  stop(leave = true): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.statsTimer);
    if (leave) this.channel.leave();
    else this.channel.end();
    for (const link of this.links.values()) link.close();
    this.links.clear();
    this.media?.stop();
    this.options.status.peers = {};
    if (this.options.status.phase !== 'failed') this.options.status.phase = 'ended';
    this.options.view.setRunning(undefined);
    this.options.ended();
  }

  /** Media goes through the server: the only connection is with `switchboard`, which offers. */
  private get relayed(): boolean {
    return this.channel.mode === 'relay';
  }

  private async handle(signal: Signal): Promise<void> {
    if (this.stopped) return;
    const from = signal.senderId ?? '';
    const { role } = this.options;
    this.log(`← ${signal.type}${from ? ` from ${from}` : ''}${describePayload(signal)}`);
    switch (signal.type) {
      case 'new-peer':
        if (this.relayed) {
          // Only the publisher's arrival is announced, to viewers: its video comes on the same connection.
          this.options.status.publisher = from;
          break;
        }
        // A known id registering again is a new page: its old connection is dead.
        this.drop(from);
        if (role === 'publish') await this.offerTo(from);
        break;
      case 'peer-left':
        if (this.relayed) {
          // The server keeps this viewer's connection: the video stops until a publisher sends again.
          if (this.options.status.publisher === from) this.options.status.publisher = undefined;
          this.log(`${from} stopped publishing; the connection to ${SERVER_PEER} stays for when it is back`);
          break;
        }
        this.drop(from);
        break;
      case 'session-closed':
        this.options.view.setStatus(`Session ${this.options.sessionId} was closed by the server.`);
        this.stop(false);
        break;
      case 'offer':
        await this.link(from).handleOffer(signal.payload as RTCSessionDescriptionInit);
        break;
      case 'answer': {
        const link = this.links.get(from);
        if (link) await link.handleAnswer(signal.payload as RTCSessionDescriptionInit);
        else this.log(`ignored an answer from ${from}: no offer was sent to it`);
        break;
      }
      case 'ice-candidate': {
        // A viewer may get candidates before the offer reaches it only if messages were reordered, which
        // the server does not do; the link holds them until a remote description exists either way.
        const link = this.links.get(from) ?? (role === 'view' || this.relayed ? this.link(from) : undefined);
        if (link) await link.handleCandidate(signal.payload as RTCIceCandidateInit);
        break;
      }
      case 'ice-restart': {
        // Only the offering side can restart; one restart already under way answers the request too.
        const link = this.links.get(from);
        if (role === 'publish' && !this.relayed && link && link.pc.signalingState === 'stable') await link.restartIce(`${from} asked for it`);
        break;
      }
      default:
        this.log(`ignored a message of unknown type ${signal.type}`);
    }
    this.showSummary();
  }

  /** The registration could not be resumed and was made anew: every connection starts over. */
  private async registeredAgain(peers: string[]): Promise<void> {
    if (this.stopped) return;
    this.options.status.reRegistrations = this.channel.reRegistrations;
    this.log(`registered again; present: ${peers.join(', ') || 'nobody'}`);
    for (const id of [...this.links.keys()]) this.drop(id);
    this.options.status.mode = this.channel.mode;
    if (this.relayed) {
      if (this.options.role === 'view') this.options.status.publisher = peers[0];
    } else if (this.options.role === 'publish') for (const id of peers) await this.offerTo(id);
    this.showSummary();
  }

  private async offerTo(remoteId: string): Promise<void> {
    if (this.stopped) return;
    await this.link(remoteId).offer();
  }

  private link(remoteId: string): PeerLink {
    const existing = this.links.get(remoteId);
    if (existing) return existing;
    const { role, peerId, relay, view } = this.options;
    const link: PeerLink = new PeerLink({
      remoteId,
      // In a relay session the server offers and this side answers, publisher included.
      offers: role === 'publish' && !this.relayed,
      polite: role === 'view' || this.relayed || peerId > remoteId,
      config: { iceServers: this.iceServer ? [this.iceServer] : [], iceTransportPolicy: relay ? 'relay' : 'all' },
      media: this.media?.stream,
      codec: this.options.codec,
      send: (type, payload) => this.channel.send(type, payload, remoteId),
      log: (text) => this.log(text),
      changed: () => this.render(link),
      track: (stream) => view.attachRemote(remoteId, stream),
      iceServers: async () => {
        this.iceServer = await this.channel.iceServers();
        return [this.iceServer];
      },
    });
    this.links.set(remoteId, link);
    this.render(link);
    return link;
  }

  private drop(remoteId: string): void {
    const link = this.links.get(remoteId);
    if (!link) return;
    link.close();
    this.links.delete(remoteId);
    delete this.options.status.peers[remoteId];
    this.options.view.removePeer(remoteId);
  }

  private render(link: PeerLink): void {
    if (link.isClosed || this.links.get(link.remoteId) !== link) return;
    const { pc, stats } = link;
    this.options.status.peers[link.remoteId] = {
      connectionState: pc.connectionState,
      iceConnectionState: pc.iceConnectionState,
      iceGatheringState: pc.iceGatheringState,
      signalingState: pc.signalingState,
      pair: stats?.pair,
      rttMs: stats?.rttMs,
      inKbps: stats?.inKbps ?? 0,
      outKbps: stats?.outKbps ?? 0,
      framesDecoded: stats?.framesDecoded ?? 0,
      framesSent: stats?.framesSent ?? 0,
      localCandidates: { ...link.localCandidates },
      remoteCandidates: { ...link.remoteCandidates },
      candidateErrors: [...link.candidateErrors],
      failure: link.failure,
      ...link.counts,
    };
    this.options.view.showPeer(link, this.options.role === 'view', this.relayed);
    this.showSummary();
  }

  private async poll(): Promise<void> {
    for (const link of this.links.values()) {
      try {
        await link.poll();
        this.render(link);
      } catch {
        // A connection closed while its stats were read.
      }
    }
  }

  private streamChanged(state: StreamState, detail: string | undefined): void {
    const { status, view } = this.options;
    status.stream = state;
    status.resumes = this.channel.resumes;
    view.showStreamState(state);
    if (state === 'open') {
      if (status.error?.startsWith('Event stream')) this.fail(undefined);
    } else if (state === 'reconnecting' && detail) {
      view.showError(`Event stream: ${detail}.`);
    } else if (state === 'closed' && detail) {
      // The id is someone else's now: leaving would remove their registration.
      this.fail(`${capitalize(detail)}.`);
      this.stop(false);
    }
    this.showSummary();
  }

  private showSummary(): void {
    const { role, sessionId, peerId, status, view } = this.options;
    if (this.stopped || status.phase !== 'live') return;
    const peers = Object.values(status.peers);
    const connected = peers.filter((p) => p.connectionState === 'connected').length;
    if (this.relayed) {
      const server = status.peers[SERVER_PEER]?.connectionState ?? 'new';
      const watching = role === 'publish' ? '' : status.publisher ? ` (publisher ${status.publisher})` : ', waiting for a publisher';
      view.setStatus(`${role === 'publish' ? 'Publishing' : 'Viewing'} session ${sessionId} as ${peerId} through the server: ${SERVER_PEER} ${server}${watching}.`);
      return;
    }
    const others = role === 'publish' ? 'viewer' : 'publisher';
    const count = `${connected} of ${peers.length} ${others}${peers.length === 1 ? '' : 's'} connected`;
    view.setStatus(`${role === 'publish' ? 'Publishing' : 'Viewing'} session ${sessionId} as ${peerId}: ${peers.length ? count : `waiting for a ${others}`}.`);
  }

  private fail(text: string | undefined): void {
    this.options.status.error = text;
    this.options.view.showError(text);
  }

  private enqueue(task: () => Promise<void>): void {
    this.queue = this.queue.then(task).catch((e: unknown) => this.log(`error: ${describeError(e)}`));
  }

  private log(text: string): void {
    this.options.view.log(text);
  }
}

/** The link a viewer opens to join this session. */
export function viewerLink(sessionId: string, mode: SessionMode = 'mesh'): string {
  const query = new URLSearchParams({ session: sessionId, role: 'view' });
  if (mode === 'relay') query.set('mode', 'relay');
  return `${location.origin}${location.pathname}?${query}`;
}

/** Plain words for a failure to start. */
export function describeError(e: unknown): string {
  if (e instanceof UnreachableError) return `${capitalize(e.message)}. Is the server running, and is this its address?`;
  if (e instanceof ApiError) return `The server refused: ${e.message} (${e.code}).`;
  return (e as Error)?.message ?? String(e);
}

const capitalize = (text: string) => `${text.slice(0, 1).toUpperCase()}${text.slice(1)}`;

function describePayload(signal: Signal): string {
  const payload = signal.payload as { candidate?: string; sdp?: string } | undefined;
  if (signal.type === 'ice-candidate' && payload?.candidate) {
    const type = / typ (\w+)/.exec(payload.candidate)?.[1];
    const protocol = / (udp|tcp) /i.exec(payload.candidate)?.[1];
    return type ? ` (${type}${protocol ? `, ${protocol.toLowerCase()}` : ''})` : '';
  }
  if ((signal.type === 'offer' || signal.type === 'answer') && payload?.sdp) {
    const media = payload.sdp.split('\n').filter((l) => l.startsWith('m=')).map((l) => l.slice(2).split(' ')[0]);
    return ` (${media.join(' + ') || 'no media'})`;
  }
  return '';
}
