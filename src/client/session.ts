// The test page's side of one role in one session: the library (./sdk) does the signalling and the
// connections; this shows what it reports, and keeps `window.switchboard` for scripts that check the page.
import { type LocalMedia, openMedia, type Source } from './media';
import { capitalize, describeError, PeerSession, SERVER_PEER } from './sdk/session';
import type { PeerInfo, PeerStats, SelectedPair, SessionMode, StreamState, Transport } from './sdk/switchboard';
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
  candidateErrors: PeerInfo['candidateErrors'];
  failure?: string;
  offersSent: number;
  offersReceived: number;
  answersSent: number;
  answersReceived: number;
  iceRestarts: number;
}

/** The page's state, published as `window.switchboard`. */
export interface ClientStatus {
  phase: 'idle' | 'ready' | 'starting' | 'live' | 'ended' | 'failed';
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

export interface PageSessionOptions {
  role: Role;
  transport: Transport;
  sessionId: string;
  peerId: string;
  /** The mode asked for when this page creates the session; the server's answer decides. */
  mode?: SessionMode;
  codec?: string;
  relay: boolean;
  source: Source;
  view: View;
  status: ClientStatus;
  /** Called once when the session is over, whatever ended it. */
  ended(): void;
}

export class PageSession {
  private session: PeerSession | undefined;
  private media: LocalMedia | undefined;
  private stopped = false;

  constructor(private readonly options: PageSessionOptions) {
    Object.assign(options.status, {
      phase: 'starting',
      role: options.role,
      transport: options.transport,
      sessionId: options.sessionId,
      peerId: options.peerId,
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
    view.setStatus(`Starting: registering with ${location.host}…`);
    const session = new PeerSession({
      role,
      session: sessionId,
      peer: peerId,
      transport: this.options.transport,
      mode: this.options.mode,
      codec: this.options.codec,
      relayOnly: this.options.relay,
      media: this.media?.stream,
    });
    this.session = session;
    this.listen(session);
    await session.start();
    if (this.stopped || session.ended) return;
    status.mode = session.mode;
    status.phase = 'live';
    if (role === 'publish') view.showShareLink(viewerLink(sessionId, session.mode));
    this.showSummary();
  }

  /** Leaves (the others see peer-left at once) and ends everything. */
  stop(): void {
    if (this.session) this.session.leave();
    else this.finish();
  }

  private listen(session: PeerSession): void {
    const { status, view } = this.options;
    session.on('log', ({ message }) => this.log(message));
    session.on('connection', (info) => {
      status.peers[info.id] = peerStatus(info);
      view.showPeer(info, this.options.role === 'view', session.mode === 'relay');
      this.showSummary();
    });
    session.on('track', ({ peerId, stream }) => view.attachRemote(peerId, stream));
    session.on('connection-closed', ({ peerId }) => {
      delete status.peers[peerId];
      view.removePeer(peerId);
      this.showSummary();
    });
    session.on('publisher', ({ peerId }) => {
      status.publisher = peerId;
      this.showSummary();
    });
    session.on('registered', () => {
      status.reRegistrations = session.signalling.reRegistrations;
      status.mode = session.mode;
      this.showSummary();
    });
    session.on('stream', ({ state }) => {
      status.stream = state;
      status.resumes = session.signalling.resumes;
      view.showStreamState(state);
      if (state === 'open' && status.error?.startsWith('Event stream')) this.fail(undefined);
      this.showSummary();
    });
    session.on('error', ({ message, code }) => {
      if (code === 'stream') view.showError(message);
      else if (code === 'taken_over') this.fail(message);
    });
    session.on('ended', ({ reason }) => {
      if (reason === 'session-closed') view.setStatus(`Session ${this.options.sessionId} was closed by the server.`);
      this.finish();
    });
  }

  private finish(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.media?.stop();
    this.options.status.peers = {};
    if (this.options.status.phase !== 'failed') this.options.status.phase = 'ended';
    this.options.view.setRunning(undefined);
    this.options.ended();
  }

  private showSummary(): void {
    const { role, sessionId, peerId, status, view } = this.options;
    if (this.stopped || status.phase !== 'live') return;
    const peers = Object.values(status.peers);
    const connected = peers.filter((p) => p.connectionState === 'connected').length;
    if (status.mode === 'relay') {
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

  private log(text: string): void {
    this.options.view.log(text);
  }
}

function peerStatus(info: PeerInfo): PeerStatus {
  const stats: PeerStats | undefined = info.stats;
  return {
    connectionState: info.connectionState,
    iceConnectionState: info.iceConnectionState,
    iceGatheringState: info.iceGatheringState,
    signalingState: info.signalingState,
    pair: stats?.pair,
    rttMs: stats?.rttMs,
    inKbps: stats?.inKbps ?? 0,
    outKbps: stats?.outKbps ?? 0,
    framesDecoded: stats?.framesDecoded ?? 0,
    framesSent: stats?.framesSent ?? 0,
    localCandidates: info.localCandidates,
    remoteCandidates: info.remoteCandidates,
    candidateErrors: info.candidateErrors,
    failure: info.failure,
    offersSent: info.offersSent,
    offersReceived: info.offersReceived,
    answersSent: info.answersSent,
    answersReceived: info.answersReceived,
    iceRestarts: info.iceRestarts,
  };
}

/** The link a viewer opens to join this session. */
export function viewerLink(sessionId: string, mode: SessionMode = 'mesh'): string {
  const query = new URLSearchParams({ session: sessionId, role: 'view' });
  if (mode === 'relay') query.set('mode', 'relay');
  return `${location.origin}${location.pathname}?${query}`;
}

export { capitalize, describeError };
