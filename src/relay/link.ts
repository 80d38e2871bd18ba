// One server-side RTCPeerConnection with one peer of a relay session, and its signalling: the server
// offers with its candidates in the offer, the peer answers through POST /message and trickles its own.
import type { Socket } from 'node:dgram';
import { type PeerConfig, type RTCIceCandidate, RTCPeerConnection, type RTCRtpTransceiver } from 'werift';
import type { Clock } from '../clock';
import { SignalError } from '../errors';
import type { NegotiatedCodec } from './forwarder';
import { guardChecks, iceLiteAtSessionLevel } from './ice-lite';
import { MAX_REMOTE_CANDIDATES } from './messages';

export interface LinkDeps {
  /** Sends an event to the peer, from `switchboard`. */
  send(type: string, payload: unknown): void;
  log(line: string): void;
  clock: Clock;
  /** The address announced instead of the local one in every candidate (RELAY_PUBLIC_IP). */
  publicIp?: string;
  /** An answer of the server's waits this long at most for its candidates (OFFER_GATHER_MS unless said). */
  gatherMs?: number;
}

/**
 * How long the server's offer waits for its own candidates. Host candidates (all an ICE-lite relay has)
 * are found in a millisecond or two, and in the offer the peer can check them as soon as it has answered,
 * rather than once its page has handled each trickled one. With RELAY_ICE_URLS, what STUN or TURN finds
 * takes a round trip to them: past this the offer goes without it, and it trickles.
 */
export const OFFER_GATHER_MS = 20;

/** What a peer may send to `switchboard`. */
export type LinkMessage =
  | { type: 'offer'; sdp: string }
  | { type: 'answer'; sdp: string }
  | { type: 'ice-candidate'; candidate: { candidate: string; sdpMid?: string; sdpMLineIndex?: number; usernameFragment?: string } | undefined }
  | { type: 'ice-restart' };

type CandidateInit = ReturnType<RTCIceCandidate['toJSON']>;

const guarded = new WeakSet<Socket>();

/**
 * The UDP sockets of a connection's ICE transports. werift offers no public way to them: this reads its
 * private fields (`RTCIceTransport.connection.protocols[].transport.socket`), which is why werift's
 * version is pinned exactly in package.json; test/relay/werift-sockets.test.ts fails the day an upgrade
 * moves them, instead of the guard silently finding no socket.
 */
export function udpSockets(pc: RTCPeerConnection): Socket[] {
  const sockets: Socket[] = [];
  for (const transport of pc.iceTransports) {
    const { protocols } = transport.connection as unknown as { protocols?: { transport?: { socket?: Socket } }[] };
    for (const protocol of protocols ?? []) {
      const socket = protocol.transport?.socket;
      if (socket) sockets.push(socket);
    }
  }
  return sockets;
}

export class ServerLink {
  readonly pc: RTCPeerConnection;
  /** Offers, answers and candidates are applied one at a time, in the order they came. */
  protected queue: Promise<void> = Promise.resolve();
  protected closed = false;
  private offers = 0;
  /** Candidates the peer sent since the server's last offer: werift keeps each, applied or held for the answer. */
  private remoteCandidates = 0;
  /** While the offer waits for the server's candidates, those found: they go in it, not as events. */
  private heldCandidates: CandidateInit[] | undefined;

  constructor(
    readonly peerId: string,
    config: Partial<PeerConfig>,
    protected readonly deps: LinkDeps,
  ) {
    this.pc = new RTCPeerConnection(config);
    this.pc.onIceCandidate.subscribe((candidate) => {
      if (!candidate || this.closed) return;
      if (this.heldCandidates) this.heldCandidates.push(candidate.toJSON());
      else this.trickle(candidate.toJSON());
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Offers with the candidates gathered within `OFFER_GATHER_MS` in the offer; any found later follow it
   * as events (trickle ICE).
   */
  offer(iceRestart = false): void {
    this.enqueue(async () => {
      const offer = await this.pc.createOffer({ iceRestart });
      if (this.closed) return;
      this.offers++;
      const held: CandidateInit[] = [];
      this.heldCandidates = held;
      // werift's setLocalDescription resolves once gathering is done, STUN and TURN included.
      const applied = this.pc.setLocalDescription(offer);
      // Awaited below, unless the connection closes first: its failure then is no one's concern.
      applied.catch(() => undefined);
      try {
        await Promise.race([applied, this.gathered(OFFER_GATHER_MS)]);
      } finally {
        this.heldCandidates = undefined;
      }
      if (this.closed) return;
      this.guardSockets();
      const described = this.localSdp();
      // Found while the offer waited, yet not in the description werift had made by then (it adds them
      // once gathering is done).
      const missing = held.map((init) => announce(init.candidate, this.deps.publicIp)).filter((line) => !described.includes(`a=${line}\r\n`));
      this.deps.send('offer', { type: 'offer', sdp: iceLiteAtSessionLevel(withCandidates(described, missing)) });
      // The peer's answer is applied after the description (the queue waits for this task).
      await applied;
      this.guardSockets();
    });
  }

  private trickle(init: CandidateInit): void {
    // Before the peer can know the candidate, and so check it.
    guardChecks(this.pc);
    this.deps.send('ice-candidate', { ...init, candidate: announce(init.candidate, this.deps.publicIp) });
  }

  /** Resolves once the server's candidates are gathered, or after `ms` with those found by then. */
  protected gathered(ms: number): Promise<void> {
    if (this.pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const cancel = this.deps.clock.schedule(ms, done);
      const { unSubscribe } = this.pc.iceGatheringStateChange.subscribe((state) => {
        if (state === 'complete') done();
      });
      function done() {
        cancel();
        unSubscribe();
        resolve();
      }
    });
  }

  /** The local description as the peer should see it: candidates announced with RELAY_PUBLIC_IP. */
  protected localSdp(): string {
    const sdp = this.pc.localDescription?.sdp;
    if (!sdp) throw new Error('no local description');
    return sdp.replace(/^a=(candidate:.*?)(\r?)$/gm, (_, candidate: string, cr: string) => `a=${announce(candidate, this.deps.publicIp)}${cr}`);
  }

  /**
   * werift leaves its UDP sockets without an 'error' listener, and Bun reports an ICMP "port unreachable"
   * (a peer whose page closed) as an 'error' event on the socket: unheard, that would end the process.
   * The sockets exist once gathering is done; each gets a listener that only logs.
   */
  protected guardSockets(): void {
    guardChecks(this.pc);
    for (const socket of udpSockets(this.pc)) {
      if (guarded.has(socket)) continue;
      guarded.add(socket);
      socket.on('error', (e: Error) => this.deps.log(`relay: ${this.peerId}: ${e.message} (the peer is gone or unreachable)`));
    }
  }

  /** A message the peer sent to `switchboard`, already checked for shape. */
  handle(message: LinkMessage): void {
    switch (message.type) {
      case 'answer':
        this.enqueue(async () => {
          if (this.pc.signalingState !== 'have-local-offer') {
            this.deps.log(`relay: ${this.peerId} answered in state ${this.pc.signalingState}; ignored`);
            return;
          }
          await this.pc.setRemoteDescription({ type: 'answer', sdp: message.sdp });
        });
        break;
      case 'ice-candidate': {
        // The end of the peer's candidates: werift needs no word of it.
        const candidate = message.candidate;
        if (!candidate) break;
        if (this.remoteCandidates >= MAX_REMOTE_CANDIDATES) {
          // Refused in the answer to the request: accepted and then dropped, it would look delivered.
          throw new SignalError(
            'too_many_candidates',
            `peer ${this.peerId} sent switchboard ${MAX_REMOTE_CANDIDATES} ICE candidates since its last offer, the most one connection takes; an ice-restart starts anew`,
          );
        }
        this.remoteCandidates++;
        this.enqueue(async () => {
          await this.pc.addIceCandidate(candidate);
        });
        break;
      }
      case 'ice-restart':
        // The peer saw its connection fail; the offering side restarts, as in a mesh session.
        if (this.offers > 0) {
          // A new ICE generation: the peer gathers, and sends its candidates, anew.
          this.remoteCandidates = 0;
          this.offer(true);
        }
        break;
    }
  }

  /**
   * Answers an offer of the peer's, on this connection whoever made it first (werift keeps the DTLS
   * roles of the first exchange): resolves with the answer once the server's candidates are in it, or
   * after `gatherMs` with those found by then; rejects when the offer cannot be applied.
   */
  answer(offerSdp: string): Promise<string> {
    // A new offer starts a new count of the peer's candidates, as a restart of the server's does.
    this.remoteCandidates = 0;
    return this.run(() => this.applyOffer(offerSdp));
  }

  /** Applies an offer and makes the answer, in the link's queue (see `run`): the answer's SDP, with the candidates gathered. */
  protected async applyOffer(offerSdp: string): Promise<string> {
    await this.pc.setRemoteDescription({ type: 'offer', sdp: offerSdp });
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    await this.gathered(this.deps.gatherMs ?? OFFER_GATHER_MS);
    this.guardSockets();
    this.answered();
    return this.localSdp();
  }

  /** Runs once an answer is set (its sockets exist then). */
  protected answered(): void {}

  /** The codecs the peer's answer accepted on this transceiver, with its payload types. */
  static negotiated(transceiver: RTCRtpTransceiver): NegotiatedCodec[] {
    return transceiver.codecs.map((c) => ({ payloadType: c.payloadType, mimeType: c.mimeType, clockRate: c.clockRate, parameters: c.parameters }));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pc.close().catch((e: unknown) => this.deps.log(`relay: closing the connection of ${this.peerId} failed: ${(e as Error).message}`));
  }

  /** Runs `task` in the link's queue, after everything before it, and hands back its result. */
  protected run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.queue.then(() => {
      if (this.closed) throw new Error('the connection is closed');
      return task();
    });
    this.queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  protected enqueue(task: () => Promise<void>): void {
    this.queue = this.queue.then(() => (this.closed ? undefined : task())).catch((e: unknown) => this.deps.log(`relay: ${this.peerId}: ${(e as Error).message}`));
  }
}

/**
 * `sdp` with `candidates` (`candidate:…` values) in each media section, after its own: the sections of
 * a bundle share one transport, and werift lists its candidates in each.
 */
function withCandidates(sdp: string, candidates: readonly string[]): string {
  if (candidates.length === 0) return sdp;
  const lines = candidates.map((c) => `a=${c}\r\n`).join('');
  // Before each section's ICE credentials, where werift writes its candidates.
  return sdp.replace(/^a=ice-ufrag:/gm, `${lines}a=ice-ufrag:`);
}

/**
 * The candidate as peers should see it: with RELAY_PUBLIC_IP, a host candidate's address is replaced by
 * the public one (a server behind 1:1 NAT, where the port is the same outside).
 */
export function announce(candidate: string, publicIp: string | undefined): string {
  if (!publicIp) return candidate;
  const parts = candidate.split(' ');
  // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> …
  if (parts.length < 8 || parts[7] !== 'host') return candidate;
  parts[4] = publicIp;
  return parts.join(' ');
}
