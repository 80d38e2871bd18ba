// switchboard's client library: the types of `/sdk/switchboard.js` (served with the server, of its
// version). The implementation (src/client/sdk/index.ts) takes its types from this file, and
// src/client/sdk/contract.ts makes `tsc` fail when the two disagree.

/** The version of the server this library was built with (its package.json). */
export declare const version: string;

/** A publisher sends media; a viewer receives it. */
export type Role = 'publish' | 'view';
/** How media flows in the session: peer to peer (`mesh`), or through the server (`relay`, its peer `switchboard`). */
export type SessionMode = 'mesh' | 'relay';
/** How events arrive and messages leave: Server-Sent Events and POST (`sse`, the seed's), or one WebSocket (`ws`). */
export type Transport = 'sse' | 'ws';
/** The state of the event stream (or socket). */
export type StreamState = 'connecting' | 'open' | 'reconnecting' | 'closed';
export type CandidateType = 'host' | 'srflx' | 'prflx' | 'relay';

/** An event as the server sends it. */
export interface Signal {
  type: string;
  senderId?: string;
  payload?: unknown;
  time?: string;
}

/** One ICE server, as `GET /iceServers` gives it (the shape of RTCIceServer). */
export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export interface SignallingOptions {
  /** The server's origin (`https://signal.example.com`). Default: where this module was loaded from, else the page's origin. */
  server?: string;
  session: string;
  peer: string;
  /** Default `sse`. Bun and other runtimes without EventSource: `ws`. */
  transport?: Transport;
  /** The mode of a session this peer creates; the server's answer decides (`mode`). */
  mode?: SessionMode;
  role?: Role;
  /** A credential for `POST /register` (a join token, a JWT); later requests carry the peer token it returns. */
  token?: string;
  /**
   * How long, ms, a trickled ICE candidate waits for others to go out with it in one batch (one
   * `POST /message`, or one WebSocket frame; at most 32). Default 5; 0: each message on its own, as a
   * seed client sends it.
   */
  batchMs?: number;
}

export interface SignallingEvents {
  /** Every event but `ping`, in the order the server sent them. */
  signal: Signal;
  stream: { state: StreamState; detail?: string };
  /** Registered anew because the old registration could not be resumed: negotiate again with `peers`. */
  registered: { peers: string[] };
  log: { message: string };
}

/**
 * One peer's registration and event stream, without media: what a device's software or a test needs.
 * The stream resumes by itself after a drop (Last-Event-ID), and the peer registers again when the
 * server cannot resume it; a takeover of the id by another client is final.
 */
export interface Signalling {
  readonly sessionId: string;
  readonly peerId: string;
  readonly transport: Transport;
  /** The session's mode, as the last registration reported it. */
  readonly mode: SessionMode;
  readonly streamState: StreamState;
  /** This registration's peer token: `Authorization: Bearer` of the peer's own requests (DELETE /session, say). */
  readonly peerToken: string | undefined;
  /** Stream reconnects that resumed where they stopped. */
  readonly resumes: number;
  /** Times the peer had to register again. */
  readonly reRegistrations: number;
  /** `POST /register`: the peers already in the session. */
  register(): Promise<string[]>;
  /**
   * The ICE servers the last registration's answer carried: what `iceServers()` would fetch now, for the
   * first connections (a restart later fetches fresh TURN credentials). Undefined from a server that sends none.
   */
  readonly registeredIceServers: IceServer | undefined;
  /**
   * The server's offer the last registration's answer carried (relay sessions: `POST /register` asks for
   * it with `?offer=inline`), once; undefined when it did not carry one. The stream does not carry it:
   * taken before `open()`, it is the caller's to handle first; not taken, it is the first `signal` once
   * the stream opens (after a registration made again, right after `registered`).
   */
  takeOffer(): Signal | undefined;
  /** `GET /iceServers`, with the peer token once registered (TURN credentials need it outside AUTH_MODE=open). */
  iceServers(): Promise<IceServer>;
  /** Opens the event stream and keeps it open until `leave()` or `end()`. */
  open(): void;
  /** A message to one peer, in order; a full queue (429) is retried; ICE candidates go in batches (`batchMs`). */
  send(type: string, payload: unknown, target: string): Promise<void>;
  /** Stops the stream and unregisters (works during page unload). */
  leave(): void;
  /** Stops the stream without unregistering. */
  end(): void;
  on<K extends keyof SignallingEvents>(type: K, listener: (event: SignallingEvents[K]) => void): () => void;
}

export interface JoinOptions extends Omit<SignallingOptions, 'peer' | 'role'> {
  role: Role;
  /** Default: `publisher-…` or `viewer-…` with a random suffix. */
  peer?: string;
  /** What a publisher sends. */
  media?: MediaStream;
  /** Only TURN relay candidates (iceTransportPolicy `relay`). */
  relayOnly?: boolean;
  /** The video codec a publisher prefers (`h264`, `vp8`), where the browser has it. */
  codec?: string;
  /** How often `stats` events come, ms (default 1000; 0: never). */
  statsIntervalMs?: number;
}

export interface SelectedPair {
  local: CandidateType | string;
  remote: CandidateType | string;
  /** udp or tcp, between this browser and the first hop (the TURN server, with a relay). */
  protocol: string;
  localAddress: string;
  remoteAddress: string;
  /** For a relay candidate: how this browser reaches its TURN server (udp, tcp, tls). */
  relayProtocol?: string;
}

export interface PeerStats {
  /** The candidate pair in use: its types say the path (host, srflx, relay). */
  pair?: SelectedPair;
  /** Round-trip time of the selected pair, ms. */
  rttMs?: number;
  /** RTP received and sent, kbit/s. */
  inKbps: number;
  outKbps: number;
  framesDecoded: number;
  framesPerSecond?: number;
  frameWidth?: number;
  frameHeight?: number;
  framesSent: number;
  sentFramesPerSecond?: number;
  packetsLost: number;
}

export interface CandidateError {
  url: string;
  errorCode: number;
  errorText: string;
}

/**
 * The phases of a connection until its first frame, in order: `registered` (POST /register answered),
 * `offer` (the first offer received, or sent by the side that offers), `answer` (the first answer sent,
 * or received), `iceConnected`, `dtlsConnected`, `firstPacket` (inbound-rtp packetsReceived > 0) and
 * `firstFrame` (inbound-rtp framesDecoded > 0). The last two are read from getStats every 10 ms once ICE
 * is up, so they are late by up to that much; a side that sends only has neither.
 */
export type TimelinePhase = 'registered' | 'offer' | 'answer' | 'iceConnected' | 'dtlsConnected' | 'firstPacket' | 'firstFrame';

/**
 * When each phase of a connection happened, in ms after `startedAt`; a phase not reached yet is absent.
 * Each is the first time (an ICE restart later does not move it).
 */
export type PeerTimeline = { [phase in TimelinePhase]?: number } & {
  /**
   * The zero, ms since the epoch (performance.timeOrigin + performance.now()): the join's first request
   * (POST /register) for the connections the join made (a viewer's, every relay connection); for a
   * connection that began later (a mesh publisher's with a viewer who joined after it), the moment it
   * began, and then it has no `registered`.
   */
  startedAt: number;
};

/** One connection with a remote peer (in a relay session, the only one is with `switchboard`). */
export interface PeerInfo {
  readonly id: string;
  connectionState: RTCPeerConnectionState;
  iceConnectionState: RTCIceConnectionState;
  iceGatheringState: RTCIceGatheringState;
  signalingState: RTCSignalingState;
  /** The remote media, once a track arrived. */
  stream?: MediaStream;
  /** The last reading (about once a second). */
  stats?: PeerStats;
  localCandidates: Record<string, number>;
  remoteCandidates: Record<string, number>;
  candidateErrors: CandidateError[];
  /** Why the connection failed, in plain words; cleared when it connects. */
  failure?: string;
  offersSent: number;
  offersReceived: number;
  answersSent: number;
  answersReceived: number;
  iceRestarts: number;
  /** How long each phase took, as this browser saw it: a `connection` event follows every new mark. */
  timeline: PeerTimeline;
}

export interface SessionEvents {
  /** A peer registered in the session (in a relay session: the publisher, told to viewers). */
  'peer-joined': { peerId: string };
  'peer-left': { peerId: string };
  /** Remote media arrived. */
  track: { peerId: string; stream: MediaStream };
  'connection-state': { peerId: string; state: RTCPeerConnectionState };
  /** Anything about a connection changed (state, candidates, counts, stats). */
  connection: PeerInfo;
  /** A connection was closed (its peer left, or came back as a new page). */
  'connection-closed': { peerId: string };
  stats: { peerId: string; stats: PeerStats };
  /** The event stream's state; `detail` says why in plain words. */
  stream: { state: StreamState; detail?: string };
  /** In a relay session: the publisher being watched, or none. */
  publisher: { peerId: string | undefined };
  /** The peer was registered anew (connections start over). */
  registered: { peers: string[] };
  /** Something went wrong, in plain words. */
  error: { message: string; code?: string };
  /** The session is over for this peer: it left, the server closed the session, or another client took the id. */
  ended: { reason: 'left' | 'session-closed' | 'taken-over' };
  log: { message: string };
}

/** A peer in a session: its connections, their media and stats. */
export interface Session {
  readonly sessionId: string;
  readonly peerId: string;
  readonly role: Role;
  readonly transport: Transport;
  readonly mode: SessionMode;
  /** In a relay session, for a viewer: the publisher it watches through the server, while there is one. */
  readonly publisher: string | undefined;
  readonly ended: boolean;
  readonly signalling: Signalling;
  /** The connections by remote peer id. */
  peers(): PeerInfo[];
  peer(id: string): PeerInfo | undefined;
  /** Reads every connection's stats now. */
  stats(): Promise<Record<string, PeerStats>>;
  /** Restarts ICE with one peer (either side may: perfect negotiation). */
  restartIce(peerId: string): Promise<void>;
  on<K extends keyof SessionEvents>(type: K, listener: (event: SessionEvents[K]) => void): () => void;
  /** Leaves the session (the others see peer-left at once) and closes every connection. */
  leave(): void;
}

/**
 * Joins a session: registers, fetches the ICE servers with the peer token, opens the event stream, and
 * negotiates with the others (a mesh publisher offers to each viewer; in a relay session the server offers).
 */
export declare function join(options: JoinOptions): Promise<Session>;

/** Registration and event stream only, no media (`register()` and `open()` are the caller's). */
export declare function connect(options: SignallingOptions): Signalling;

/** A request the server refused, with its error code (`session_full`, `peer_not_found`, …). */
export declare class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string);
}

/** The server could not be reached at all. */
export declare class UnreachableError extends Error {}

/** Plain words for a failure. */
export declare function describeError(e: unknown): string;

/** The server's own peer in relay sessions. */
export declare const SERVER_PEER: 'switchboard';
