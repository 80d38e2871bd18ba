// One role in one session, following the seed: POST /register (its answer brings the ICE servers; from
// a server that sends none, GET /iceServers with the peer token), the event stream; on new-peer the
// publisher offers, the viewer answers, and candidates trickle both ways. One PeerLink per remote peer:
// a publisher serves every viewer of the session. In a relay session the only connection is with the
// server's peer, which offers.
import { Emitter } from './emitter';
import { PeerLink } from './peer';
import { isNewConnection } from './sdp';
import { ApiError, SERVER_PEER, SignalChannel, UnreachableError } from './signalling';
import type { IceServer, JoinOptions, PeerInfo, PeerStats, Role, Session, SessionEvents, SessionMode, Signal, Transport } from './switchboard';
import { now } from './timeline';

export { SERVER_PEER };

const STATS_INTERVAL_MS = 1000;

/** A short random id; works without a secure context, unlike crypto.randomUUID. */
export function randomId(length = 8): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789';
  return Array.from(crypto.getRandomValues(new Uint8Array(length)), (b) => alphabet[b % alphabet.length]).join('');
}

export class PeerSession implements Session {
  readonly signalling: SignalChannel;
  readonly sessionId: string;
  readonly peerId: string;
  readonly role: Role;
  private readonly links = new Map<string, PeerLink>();
  private readonly remoteStreams = new Map<string, MediaStream>();
  private readonly events = new Emitter<SessionEvents>();
  private iceServer: IceServer | undefined;
  /** Events are handled one at a time, in the order they arrived. */
  private queue: Promise<void> = Promise.resolve();
  private statsTimer: ReturnType<typeof setInterval> | undefined;
  private stopped = false;
  private currentPublisher: string | undefined;
  /** The join's first request, and when its registration was answered: the zero of the join's connections' timelines. */
  private joinStartedAt = now();
  private registeredAt: number | undefined;
  /** Until a connection is up, new connections belong to the join and share its zero. */
  private joining = true;

  constructor(private readonly options: JoinOptions) {
    this.role = options.role;
    this.sessionId = options.session;
    this.peerId = options.peer ?? `${options.role === 'publish' ? 'publisher' : 'viewer'}-${randomId(6)}`;
    this.signalling = new SignalChannel({ ...options, peer: this.peerId });
    this.signalling.on('signal', (signal) => this.enqueue(() => this.handle(signal)));
    this.signalling.on('stream', (event) => this.streamChanged(event));
    this.signalling.on('registered', ({ peers }) => this.enqueue(() => this.registeredAgain(peers)));
    this.signalling.on('log', ({ message }) => this.log(message));
  }

  get transport(): Transport {
    return this.signalling.transport;
  }

  get mode(): SessionMode {
    return this.signalling.mode;
  }

  get publisher(): string | undefined {
    return this.currentPublisher;
  }

  get ended(): boolean {
    return this.stopped;
  }

  on<K extends keyof SessionEvents>(type: K, listener: (event: SessionEvents[K]) => void): () => void {
    return this.events.on(type, listener);
  }

  /**
   * Registers, then opens the stream with the ICE servers the registration's answer carried (from a
   * server that sends none, fetched with the token it gave while the stream opens), and offers.
   */
  async start(): Promise<void> {
    const { sessionId, peerId } = this;
    this.log(`→ POST /register/${sessionId}/${peerId}`);
    this.joinStartedAt = now();
    const peers = await this.signalling.register();
    this.registeredAt = now();
    if (this.stopped) return;
    this.log(`registered as ${peerId} in session ${sessionId}; already there: ${peers.join(', ') || 'nobody'}`);
    // The registration's answer carries the ICE servers (a server that predates that does not: ask it).
    const given = this.signalling.registeredIceServers;
    const offer = this.signalling.takeOffer();
    this.log(
      `${given ? '→ the event stream (the ICE servers came with the registration)' : '→ the event stream, and GET /iceServers'}${offer ? `; ${SERVER_PEER}'s offer came with it too` : ''}`,
    );
    // With the server's offer in hand, the stream opens while the page applies it (that work is the
    // browser's WebRTC thread's; the stream's opening is the main thread's), not after its answer.
    if (offer) setTimeout(() => this.stopped || this.signalling.open(), 0);
    else this.signalling.open();
    const iceServers = given ? Promise.resolve(given) : this.signalling.iceServers();
    // Events are handled once the ICE servers are known: every connection is made with them. In a relay
    // session the one connection, with the server, is made then, before its offer comes (the browser's
    // first connection of a page takes tens of milliseconds to make).
    this.queue = this.queue.then(() =>
      iceServers.then(
        (server) => {
          this.iceServer = server;
          if (this.relayed && !this.stopped) this.link(SERVER_PEER);
        },
        () => undefined,
      ),
    );
    if (offer) this.enqueue(() => this.handle(offer));
    if (this.relayed) {
      this.log(`relay session: media goes through the server; ${SERVER_PEER} ${offer ? 'offered' : 'will offer'}`);
      if (this.role === 'view') this.setPublisher(peers[0]);
    }
    try {
      this.iceServer = await iceServers;
    } catch (e) {
      // The registration stands: leave it rather than wait for the peer timeout.
      this.stop('left');
      throw e;
    }
    if (this.stopped) return;
    this.log(`ICE servers: ${[this.iceServer.urls].flat().join(' ')}${this.iceServer.username ? ' (with TURN credentials)' : ''}`);
    // The server sends new-peer to the others, not to the one registering: a publisher that arrives
    // (or comes back after a reload) offers to those already there. In a relay session the server offers.
    // After a task, so that whoever awaited join() has subscribed to the events by then.
    if (this.role === 'publish' && !this.relayed)
      setTimeout(() => {
        for (const id of peers) this.enqueue(() => this.offerTo(id));
      }, 0);
    const interval = this.options.statsIntervalMs ?? STATS_INTERVAL_MS;
    if (interval > 0) this.statsTimer = setInterval(() => void this.poll(), interval);
  }

  leave(): void {
    this.stop('left');
  }

  peers(): PeerInfo[] {
    return [...this.links.values()].map((link) => this.info(link));
  }

  peer(id: string): PeerInfo | undefined {
    const link = this.links.get(id);
    return link ? this.info(link) : undefined;
  }

  async stats(): Promise<Record<string, PeerStats>> {
    await this.poll();
    const all: Record<string, PeerStats> = {};
    for (const [id, link] of this.links) if (link.stats) all[id] = link.stats;
    return all;
  }

  async restartIce(peerId: string): Promise<void> {
    const link = this.links.get(peerId);
    if (!link) throw new Error(`no connection with ${peerId}`);
    await link.restartIce('asked for', true);
  }

  /** Ends everything. Leaving tells the server (DELETE /register); other ends mean the id is no longer ours, or the session is gone. */
  private stop(reason: SessionEvents['ended']['reason']): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.statsTimer);
    if (reason === 'left') this.signalling.leave();
    else this.signalling.end();
    for (const id of [...this.links.keys()]) this.drop(id);
    this.events.emit('ended', { reason });
  }

  /** Media goes through the server: the only connection is with `switchboard`, which offers. */
  private get relayed(): boolean {
    return this.signalling.mode === 'relay';
  }

  private async handle(signal: Signal): Promise<void> {
    if (this.stopped) return;
    const from = signal.senderId ?? '';
    const { role } = this;
    this.log(`← ${signal.type}${from ? ` from ${from}` : ''}${describePayload(signal)}`);
    switch (signal.type) {
      case 'new-peer':
        this.events.emit('peer-joined', { peerId: from });
        if (this.relayed) {
          // Only the publisher's arrival is announced, to viewers: its video comes on the same connection.
          this.setPublisher(from);
          break;
        }
        // A known id registering again is a new page: its old connection is dead.
        this.drop(from);
        if (role === 'publish') await this.offerTo(from);
        break;
      case 'peer-left':
        this.events.emit('peer-left', { peerId: from });
        if (this.relayed) {
          // The server keeps this viewer's connection: the video stops until a publisher sends again.
          if (this.currentPublisher === from) this.setPublisher(undefined);
          this.log(`${from} stopped publishing; the connection to ${SERVER_PEER} stays for when it is back`);
          break;
        }
        this.drop(from);
        break;
      case 'session-closed':
        this.stop('session-closed');
        break;
      case 'offer': {
        const offer = signal.payload as RTCSessionDescriptionInit;
        // Another instance of a cluster carries the relay session's media now (its owner died or drained):
        // its offer is for a new connection, with the same media.
        if (this.relayed && isNewConnection(this.links.get(from)?.pc.remoteDescription?.sdp, offer.sdp ?? '')) {
          this.log(`${from} offers a new connection (another server certificate): the old one is closed`);
          this.drop(from);
        }
        // Either side may offer (perfect negotiation): a viewer restarting ICE does.
        await this.link(from).handleOffer(offer);
        break;
      }
      case 'answer': {
        const link = this.links.get(from);
        if (link) await link.handleAnswer(signal.payload as RTCSessionDescriptionInit);
        else this.log(`ignored an answer from ${from}: no offer was sent to it`);
        break;
      }
      case 'ice-candidate': {
        // The link holds candidates until a remote description exists.
        const link = this.links.get(from) ?? (role === 'view' || this.relayed ? this.link(from) : undefined);
        if (link) await link.handleCandidate(signal.payload as RTCIceCandidateInit);
        break;
      }
      case 'ice-restart': {
        // One restart already under way answers the request too.
        const link = this.links.get(from);
        if (!this.relayed && link && link.pc.signalingState === 'stable') await link.restartIce(`${from} asked for it`, true);
        break;
      }
      default:
        this.log(`ignored a message of unknown type ${signal.type}`);
    }
  }

  /** The registration could not be resumed and was made anew: every connection starts over. */
  private async registeredAgain(peers: string[]): Promise<void> {
    if (this.stopped) return;
    this.log(`registered again; present: ${peers.join(', ') || 'nobody'}`);
    for (const id of [...this.links.keys()]) this.drop(id);
    // The new connections are made with the credentials this registration brought, when it did.
    this.iceServer = this.signalling.registeredIceServers ?? this.iceServer;
    // The connections start over from this registration (its request time is the signalling's: close enough to now).
    this.joinStartedAt = now();
    this.registeredAt = this.joinStartedAt;
    this.joining = true;
    this.events.emit('registered', { peers });
    if (this.relayed) {
      if (this.role === 'view') this.setPublisher(peers[0]);
    } else if (this.role === 'publish') for (const id of peers) await this.offerTo(id);
  }

  private setPublisher(peerId: string | undefined): void {
    this.currentPublisher = peerId;
    this.events.emit('publisher', { peerId });
  }

  private async offerTo(remoteId: string): Promise<void> {
    if (this.stopped) return;
    await this.link(remoteId).offer();
  }

  private link(remoteId: string): PeerLink {
    const existing = this.links.get(remoteId);
    if (existing) return existing;
    const { relayOnly } = this.options;
    // A mesh publisher's link with a viewer that came later starts with that viewer, not with the publisher's join.
    const ofTheJoin = this.joining && (this.role === 'view' || this.relayed);
    const link: PeerLink = new PeerLink({
      startedAt: ofTheJoin ? this.joinStartedAt : now(),
      registeredAt: ofTheJoin ? this.registeredAt : undefined,
      remoteId,
      // In a relay session the server offers and this side answers, publisher included.
      offers: this.role === 'publish' && !this.relayed,
      mayOffer: !this.relayed,
      polite: this.role === 'view' || this.relayed || this.peerId > remoteId,
      config: { iceServers: this.iceServer ? [this.iceServer] : [], iceTransportPolicy: relayOnly ? 'relay' : 'all' },
      media: this.options.media,
      codec: this.options.codec,
      send: (type, payload) => this.signalling.send(type, payload, remoteId),
      log: (text) => this.log(text),
      changed: () => this.changed(link),
      track: (stream) => {
        this.remoteStreams.set(remoteId, stream);
        this.events.emit('track', { peerId: remoteId, stream });
        this.changed(link);
      },
      iceServers: async () => {
        this.iceServer = await this.signalling.iceServers();
        return [this.iceServer];
      },
    });
    let lastState = link.pc.connectionState;
    link.pc.addEventListener('connectionstatechange', () => {
      const state = link.pc.connectionState;
      if (state === lastState || this.links.get(remoteId) !== link) return;
      lastState = state;
      if (state === 'connected') this.joining = false;
      this.events.emit('connection-state', { peerId: remoteId, state });
      if (state === 'failed' && link.failure) this.events.emit('error', { message: `The connection with ${remoteId} failed: ${link.failure}.`, code: 'ice_failed' });
    });
    this.links.set(remoteId, link);
    this.changed(link);
    return link;
  }

  private drop(remoteId: string): void {
    const link = this.links.get(remoteId);
    if (!link) return;
    link.close();
    this.links.delete(remoteId);
    this.remoteStreams.delete(remoteId);
    this.events.emit('connection-closed', { peerId: remoteId });
  }

  private info(link: PeerLink): PeerInfo {
    const { pc } = link;
    return {
      id: link.remoteId,
      connectionState: pc.connectionState,
      iceConnectionState: pc.iceConnectionState,
      iceGatheringState: pc.iceGatheringState,
      signalingState: pc.signalingState,
      stream: this.remoteStreams.get(link.remoteId),
      stats: link.stats,
      localCandidates: { ...link.localCandidates },
      remoteCandidates: { ...link.remoteCandidates },
      candidateErrors: [...link.candidateErrors],
      failure: link.failure,
      ...link.counts,
      timeline: link.timeline.timeline,
    };
  }

  private changed(link: PeerLink): void {
    if (link.isClosed || this.links.get(link.remoteId) !== link) return;
    this.events.emit('connection', this.info(link));
  }

  private async poll(): Promise<void> {
    for (const link of [...this.links.values()]) {
      try {
        await link.poll();
      } catch {
        // A connection closed while its stats were read.
        continue;
      }
      if (link.stats && this.links.get(link.remoteId) === link) {
        this.events.emit('stats', { peerId: link.remoteId, stats: link.stats });
        this.changed(link);
      }
    }
  }

  private streamChanged({ state, detail }: { state: 'connecting' | 'open' | 'reconnecting' | 'closed'; detail?: string }): void {
    this.events.emit('stream', { state, detail });
    if (state === 'reconnecting' && detail) this.events.emit('error', { message: `Event stream: ${detail}.`, code: 'stream' });
    // The id is someone else's now: leaving would remove their registration.
    else if (state === 'closed' && detail) {
      this.events.emit('error', { message: `${capitalize(detail)}.`, code: 'taken_over' });
      this.stop('taken-over');
    }
  }

  private enqueue(task: () => Promise<void>): void {
    this.queue = this.queue.then(task).catch((e: unknown) => this.log(`error: ${describeError(e)}`));
  }

  private log(message: string): void {
    this.events.emit('log', { message });
  }
}

/** Joins a session; see switchboard.d.ts. */
export async function join(options: JoinOptions): Promise<Session> {
  const session = new PeerSession(options);
  await session.start();
  return session;
}

/** Plain words for a failure. */
export function describeError(e: unknown): string {
  if (e instanceof UnreachableError) return `${capitalize(e.message)}. Is the server running, and is this its address?`;
  if (e instanceof ApiError) return `The server refused: ${e.message} (${e.code}).`;
  return (e as Error)?.message ?? String(e);
}

export const capitalize = (text: string) => `${text.slice(0, 1).toUpperCase()}${text.slice(1)}`;

function describePayload(signal: Signal): string {
  const payload = signal.payload as { candidate?: string; sdp?: string } | undefined;
  if (signal.type === 'ice-candidate' && payload?.candidate) {
    const type = / typ (\w+)/.exec(payload.candidate)?.[1];
    const protocol = / (udp|tcp) /i.exec(payload.candidate)?.[1];
    return type ? ` (${type}${protocol ? `, ${protocol.toLowerCase()}` : ''})` : '';
  }
  if ((signal.type === 'offer' || signal.type === 'answer') && payload?.sdp) {
    const media = payload.sdp
      .split('\n')
      .filter((l) => l.startsWith('m='))
      .map((l) => l.slice(2).split(' ')[0]);
    return ` (${media.join(' + ') || 'no media'})`;
  }
  return '';
}
