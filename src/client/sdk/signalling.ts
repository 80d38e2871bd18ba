// The seed's HTTP + Server-Sent Events transport: POST /register, GET /iceServers, POST /message,
// EventSource on /events, DELETE /register on leave; or, with the `ws` transport, one WebSocket on /ws for
// the events and the messages, POST /message only while it is down. It keeps one peer registered through stream drops:
// EventSource resumes by itself with Last-Event-ID; when the server refuses that (the id was taken over,
// the resume window is gone, the peer timed out) this class finds out why and registers again if it should.
import { Emitter } from './emitter';
import type { IceServer, SessionMode, Signal, Signalling, SignallingEvents, SignallingOptions, StreamState, Transport } from './switchboard';

/** The server's own peer in relay sessions. */
export const SERVER_PEER = 'switchboard' as const;

/** A request the server refused, with its error code (`session_full`, `peer_not_found`, …). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Some messages of a batch were refused: their errors by their place in the batch. */
class BatchError extends Error {
  constructor(readonly refused: ReadonlyMap<number, unknown>) {
    super(`${refused.size} messages of a batch were refused`);
  }
}

/** The server could not be reached at all. */
export class UnreachableError extends Error {
  override name = 'UnreachableError';
}

const MAX_BACKOFF_MS = 30_000;
/** How long a trickled ICE candidate waits for others to go with it, by default. */
const DEFAULT_BATCH_MS = 5;
/** The most messages the server takes in one batch (MAX_BATCH). */
const MAX_BATCH = 32;

/** A message waiting to go out in a batch, and its sender's promise. */
interface Outgoing {
  body: { type: string; payload: unknown; target: string };
  resolve(): void;
  reject(e: unknown): void;
}

/** One message's result in a batch's answer (POST /message with an array). */
interface BatchResult {
  status: number;
  error?: string;
  message: string;
  retryAfter?: number;
}

/**
 * Where the server is when the caller does not say: the origin this module was loaded from (a dashboard
 * importing https://server/sdk/switchboard.js), else the page's.
 */
export function defaultServer(): string {
  const here = new URL(import.meta.url);
  if (here.protocol === 'http:' || here.protocol === 'https:') return here.origin;
  if (typeof location !== 'undefined') return location.origin;
  throw new Error('no server to connect to: pass `server` (its origin, like https://signal.example.com)');
}

export class SignalChannel implements Signalling {
  /** Stream reconnects that resumed with Last-Event-ID. */
  resumes = 0;
  /** Times the peer had to register again. */
  reRegistrations = 0;
  /** The session's mode, as the last registration reported it. */
  mode: SessionMode = 'mesh';
  private source: EventSource | undefined;
  private socket: WebSocket | undefined;
  /** Where the stream resumes from: the last event id seen, or the one POST /register gave. */
  private lastEventId: string | undefined;
  /** This registration's token: it authorises the peer's other requests, and marks a leave as ours. */
  private ownToken: string | undefined;
  private state: StreamState = 'closed';
  private ended = false;
  /** Registered at least once, and whether `leave()` was called. */
  private registered = false;
  private left = false;
  /** The stream being opened continues the previous one (Last-Event-ID), rather than a new registration's. */
  private resuming = false;
  private backoffMs = 1000;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** POSTs go out one at a time: the server keeps the order in which they were answered. */
  private sending: Promise<unknown> = Promise.resolve();
  /** ICE candidates waiting, up to `batchMs`, to go out together in one POST (or one frame). */
  private batch: Outgoing[] = [];
  private batchTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly path: string;
  private readonly events = new Emitter<SignallingEvents>();
  private readonly origin: string;
  readonly sessionId: string;
  readonly peerId: string;
  readonly transport: Transport;

  constructor(private readonly options: SignallingOptions) {
    this.sessionId = options.session;
    this.peerId = options.peer;
    this.transport = options.transport ?? 'sse';
    if (this.transport === 'sse' && typeof EventSource === 'undefined') {
      throw new Error("this runtime has no EventSource: use transport 'ws'");
    }
    this.origin = (options.server ?? defaultServer()).replace(/\/+$/, '');
    this.path = `${encodeURIComponent(this.sessionId)}/${encodeURIComponent(this.peerId)}`;
    // A reload of this tab presents the token of the registration it replaces: with AUTH_MODE=token
    // that is what lets it take its own id over at once, rather than after the peer timeout.
    this.ownToken = tabStorage()?.getItem(this.storageKey) ?? undefined;
  }

  on<K extends keyof SignallingEvents>(type: K, listener: (event: SignallingEvents[K]) => void): () => void {
    return this.events.on(type, listener);
  }

  get peerToken(): string | undefined {
    return this.ownToken;
  }

  get streamState(): StreamState {
    return this.state;
  }

  private log(message: string): void {
    this.events.emit('log', { message });
  }

  private get storageKey(): string {
    return `switchboard:${this.path}`;
  }

  /**
   * The ICE servers the last registration's answer carried (what `GET /iceServers` gives this peer with
   * its token), for its first connections; undefined from a server that sends none, or where its
   * Cloudflare TURN service must be asked first. Later ones (an ICE restart) ask `iceServers()` afresh.
   */
  registeredIceServers: IceServer | undefined = undefined;
  /** The server's offer the last registration's answer carried (relay sessions), until taken: it does not come over the stream. */
  private registeredOffer: Signal | undefined;

  /**
   * The server's offer that came with the registration's answer, once, for a caller that handles it
   * before opening the stream; one not taken by then is the stream's first `signal`.
   */
  takeOffer(): Signal | undefined {
    const offer = this.registeredOffer;
    this.registeredOffer = undefined;
    return offer;
  }

  /**
   * `GET /iceServers`: one RTCIceServer, as the seed gives it. Once registered the request carries the
   * peer token: outside AUTH_MODE=open TURN credentials are handed out only with it.
   */
  async iceServers(): Promise<IceServer> {
    // The session and the peer that the token proves, so that the TURN username names this peer.
    const query = new URLSearchParams({ sessionId: this.sessionId, peerId: this.peerId });
    return iceServer((await this.request('GET', `/iceServers?${query}`)) as IceServer & { ttl?: number });
  }

  /** `POST /register`: returns the peers already in the session (and sets `mode`). */
  async register(): Promise<string[]> {
    const query = new URLSearchParams();
    if (this.options.mode) query.set('mode', this.options.mode);
    if (this.options.role) query.set('role', this.options.role);
    // In a relay session the server's offer comes in the answer, when it can be made at once: a round trip less.
    query.set('offer', 'inline');
    const search = query.size ? `?${query}` : '';
    // A credential the caller was given (a join token, a JWT) registers; a reload's own token takes the id over.
    const bearer = this.options.token ?? this.ownToken;
    const answer = (await this.request('POST', `/register/${this.path}${search}`, undefined, bearer)) as {
      peers?: string[];
      token?: string;
      lastEventId?: number;
      mode?: SessionMode;
      iceServers?: IceServer & { ttl?: number };
      offer?: RTCSessionDescriptionInit;
    };
    this.registered = true;
    this.registeredOffer = answer.offer && { type: 'offer', senderId: SERVER_PEER, payload: answer.offer };
    this.registeredIceServers = answer.iceServers && iceServer(answer.iceServers);
    this.mode = answer.mode ?? 'mesh';
    this.ownToken = answer.token;
    if (answer.token !== undefined) tabStorage()?.setItem(this.storageKey, answer.token);
    // Opening the first stream from this id means even its loss before the first event loses nothing.
    this.lastEventId = answer.lastEventId === undefined ? undefined : String(answer.lastEventId);
    // Left while the registration was on its way: undo it rather than leave it to the peer timeout.
    if (this.left) this.sendLeave();
    return answer.peers ?? [];
  }

  /** Opens the event stream; from here on the channel keeps it open until `leave()` or `end()`. */
  open(): void {
    this.ended = false;
    this.connect(this.lastEventId);
    // An offer the registration brought and nobody took is the stream's first signal, as it would have been.
    const offer = this.takeOffer();
    if (offer) queueMicrotask(() => this.events.emit('signal', offer));
  }

  /**
   * `POST /message` to one peer, or a frame on the open WebSocket (its ack comes back on the socket; a
   * refusal is logged). Sent in order; a full queue (429) is retried after Retry-After. ICE candidates
   * trickle out a few at a time: those that come within `batchMs` of the first go together, as one
   * batch (one request, or one frame), which the server delivers in order.
   */
  send(type: string, payload: unknown, target: string): Promise<void> {
    const body = { type, payload, target };
    const batchMs = this.options.batchMs ?? DEFAULT_BATCH_MS;
    if (type !== 'ice-candidate' || batchMs <= 0) {
      // What waits goes first: a message never overtakes a candidate sent before it.
      this.flush();
      return this.enqueue([body]);
    }
    const queued = new Promise<void>((resolve, reject) => this.batch.push({ body, resolve, reject }));
    if (this.batch.length >= MAX_BATCH) this.flush();
    else this.batchTimer ??= setTimeout(() => this.flush(), batchMs);
    return queued;
  }

  /** Sends the candidates that wait, now. */
  private flush(): void {
    clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    if (this.batch.length === 0) return;
    const waiting = this.batch;
    this.batch = [];
    this.enqueue(waiting.map((w) => w.body)).then(
      () => {
        for (const w of waiting) w.resolve();
      },
      (e: unknown) => {
        // A batch's refusals name the message each one is about; the rest went.
        const refused = e instanceof BatchError ? e.refused : new Map(waiting.map((_, i) => [i, e]));
        waiting.forEach((w, i) => {
          if (refused.has(i)) w.reject(refused.get(i));
          else w.resolve();
        });
      },
    );
  }

  /** Messages in order after those before them: one body, or a batch. */
  private enqueue(bodies: Outgoing['body'][]): Promise<void> {
    const next = this.sending.then(() => {
      const socket = this.socket;
      if (socket?.readyState === WebSocket.OPEN) return socket.send(JSON.stringify(bodies.length === 1 ? bodies[0] : bodies));
      return bodies.length === 1 && bodies[0] ? this.post(bodies[0]) : this.postBatch(bodies);
    });
    this.sending = next.catch(() => undefined);
    return next;
  }

  /** Stops the stream and tells the server the peer is gone. Works during page unload (keepalive). */
  leave(): void {
    if (this.left) return;
    this.left = true;
    this.end();
    if (this.registered) this.sendLeave();
  }

  private sendLeave(): void {
    // keepalive lets the request outlive the page; its answer is of no use to anyone by then.
    // The token says which registration leaves: a reloaded page that registered again is not removed.
    fetch(`${this.origin}/register/${this.path}`, { method: 'DELETE', keepalive: true, headers: this.authorization() }).catch(() => undefined);
  }

  /** Stops the stream without leaving (the session is over). */
  end(): void {
    this.ended = true;
    // Candidates still waiting are of no use to anyone now; their senders hear that they did not go.
    clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    for (const w of this.batch.splice(0)) w.reject(new Error('the channel ended before the message went'));
    clearTimeout(this.retryTimer);
    this.source?.close();
    this.source = undefined;
    this.socket?.close();
    this.socket = undefined;
    this.setState('closed');
  }

  private async post(body: Outgoing['body']): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.request('POST', `/message/${this.path}`, body);
        return;
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 429 || attempt >= 4 || this.ended) throw e;
        await this.retryPause(body, e.message, attempt);
      }
    }
  }

  /**
   * A batch in one `POST /message`: the messages refused for room or rate (429) go again, in their order,
   * as `post` sends one again; any other refusal rejects that message's promise (a `BatchError`).
   */
  private async postBatch(bodies: Outgoing['body'][]): Promise<void> {
    let left = bodies.map((body, i) => ({ body, i }));
    const refused = new Map<number, unknown>();
    for (let attempt = 0; left.length > 0; attempt++) {
      const { results } = (await this.request(
        'POST',
        `/message/${this.path}`,
        left.map((m) => m.body),
      )) as { results: BatchResult[] };
      const again: typeof left = [];
      left.forEach((m, k) => {
        const result = results[k];
        if (result === undefined || result.status < 300) return;
        const error = new ApiError(result.status, result.error ?? 'http_error', result.message);
        if (result.status === 429 && attempt < 4 && !this.ended) again.push(m);
        else refused.set(m.i, error);
      });
      left = again;
      const first = again[0];
      if (first) await this.retryPause(first.body, `${again.length} of them refused for now`, attempt);
    }
    if (refused.size > 0) throw new BatchError(refused);
  }

  private async retryPause(body: Outgoing['body'], why: string, attempt: number): Promise<void> {
    this.log(`${body.target} is not reading its messages (${why}); sending ${body.type} again in a moment`);
    await new Promise((resolve) => setTimeout(resolve, 1000 * (attempt + 1)));
  }

  private connect(lastEventId: string | undefined): void {
    if (this.transport === 'ws') return this.connectSocket(lastEventId);
    this.source?.close();
    const events = new EventSource(`${this.origin}/events/${this.path}${this.streamQuery(lastEventId)}`);
    this.source = events;
    this.setState(this.state === 'reconnecting' ? 'reconnecting' : 'connecting');
    events.onopen = () => {
      if (this.source !== events) return;
      if (this.resuming) {
        this.resuming = false;
        this.resumes++;
        this.log(`event stream back, resumed after event ${this.lastEventId ?? '(none)'}: nothing to renegotiate`);
      }
      this.backoffMs = 1000;
      this.setState('open');
    };
    events.onmessage = (e: MessageEvent<string>) => {
      if (this.source !== events) return;
      this.lastEventId = e.lastEventId;
      let signal: Signal;
      try {
        signal = JSON.parse(e.data) as Signal;
      } catch {
        this.log(`ignored an event that is not JSON: ${e.data.slice(0, 80)}`);
        return;
      }
      if (signal.type === 'session-closed') this.end();
      if (signal.type !== 'ping') this.events.emit('signal', signal);
    };
    events.onerror = () => {
      if (this.source !== events || this.ended) return;
      if (events.readyState === EventSource.CONNECTING) {
        // The browser reconnects by itself and sends Last-Event-ID (or, before any event arrived, the
        // URL still carries the registration's ?lastEventId=): the server replays what was missed.
        this.resuming = true;
        if (this.state !== 'reconnecting') this.log(`event stream lost after event ${this.lastEventId ?? '(none)'}; reconnecting`);
        this.setState('reconnecting', 'the event stream dropped; reconnecting');
        return;
      }
      // CLOSED: the server refused the reconnect (or did not answer with a stream). Find out why.
      events.close();
      this.setState('reconnecting', 'the server refused to resume the event stream');
      void this.recover();
    };
  }

  /**
   * The WebSocket transport: frames with a `type` are events (with their `id`), the others acks. A lost
   * socket reconnects with ?lastEventId=; one the server refused (close code 4000 + status) goes through
   * `recover()`, as a refused EventSource does.
   */
  private connectSocket(lastEventId: string | undefined): void {
    this.socket?.close();
    const base = this.origin.replace(/^http/, 'ws');
    const socket = new WebSocket(`${base}/ws/${this.path}${this.streamQuery(lastEventId)}`);
    this.socket = socket;
    this.setState(this.state === 'reconnecting' ? 'reconnecting' : 'connecting');
    let opened = false;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      opened = true;
      if (this.resuming) {
        this.resuming = false;
        this.resumes++;
        this.log(`socket back, resumed after event ${this.lastEventId ?? '(none)'}: nothing to renegotiate`);
      }
      this.backoffMs = 1000;
      this.setState('open');
    };
    socket.onmessage = (e: MessageEvent<string>) => {
      if (this.socket !== socket) return;
      let frame: Signal & { id?: number; ack?: unknown; status?: number; error?: string; message?: string };
      try {
        frame = JSON.parse(e.data);
      } catch {
        this.log(`ignored a frame that is not JSON: ${String(e.data).slice(0, 80)}`);
        return;
      }
      if (typeof frame.type !== 'string') {
        if ((frame.status ?? 0) >= 400) this.log(`the server refused a message: ${frame.error}: ${frame.message}`);
        return;
      }
      const { id, ...signal } = frame;
      this.lastEventId = String(id);
      if (signal.type === 'session-closed') this.end();
      if (signal.type !== 'ping') this.events.emit('signal', signal);
    };
    socket.onclose = (e: CloseEvent) => {
      if (this.socket !== socket || this.ended) return;
      this.socket = undefined;
      // A refused upgrade (an HTTP 404 for a peer the server forgot, say) ends without opening, as 1006:
      // ask why, as for a socket the server closed with a reason.
      if (e.code >= 4000 || !opened) {
        this.setState('reconnecting', e.code >= 4000 ? `the server refused the socket (${e.reason})` : 'the server refused the socket');
        void this.recover();
        return;
      }
      this.resuming = true;
      this.log(`socket lost (${e.code}) after event ${this.lastEventId ?? '(none)'}; reconnecting`);
      this.setState('reconnecting', 'the socket dropped; reconnecting');
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => {
        if (!this.ended) this.connect(this.lastEventId);
      }, this.backoffMs);
      this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs * 2);
    };
  }

  /**
   * After the server refused a stream: ask it why (the status of the same request), then resume,
   * register again, or stop. A takeover by another page is final: registering again would take the id
   * back, and the two pages would take it from each other forever.
   */
  private async recover(): Promise<void> {
    if (this.ended) return;
    let why: { status: number; code: string; message: string };
    try {
      why = await this.probe();
    } catch (e) {
      this.log(`${(e as Error).message}; trying again in ${this.backoffMs / 1000} s`);
      this.setState('reconnecting', (e as Error).message);
      this.retryLater();
      return;
    }
    if (this.ended) return;
    if (why.status === 200) {
      this.resuming = true;
      this.connect(this.lastEventId);
      return;
    }
    if (why.code === 'superseded') {
      this.log('another page registered with this peer id and took it over; this page stops');
      this.end();
      this.events.emit('stream', { state: 'closed', detail: `another page joined session ${this.sessionId} as ${this.peerId} and took over` });
      return;
    }
    if (why.code === 'resume_gap' || why.code === 'peer_not_found' || why.code === 'session_not_found') {
      this.log(`cannot resume (${why.message}); registering again`);
      await this.registerAgain();
      return;
    }
    this.log(`the server answered the event stream with ${why.status} ${why.code}: ${why.message}; trying again in ${this.backoffMs / 1000} s`);
    this.retryLater();
  }

  /** A new incarnation of this peer: the others get new-peer and negotiate afresh. */
  private async registerAgain(): Promise<void> {
    if (this.ended) return;
    try {
      const peers = await this.register();
      if (this.ended) return;
      this.reRegistrations++;
      this.resuming = false;
      this.connect(this.lastEventId);
      this.events.emit('registered', { peers });
      // The new registration's offer, if it brought one, after the news of it: its stream will not carry it.
      const offer = this.takeOffer();
      if (offer) this.events.emit('signal', offer);
    } catch (e) {
      this.log(`registering again failed: ${(e as Error).message}; trying again in ${this.backoffMs / 1000} s`);
      this.retryLater();
    }
  }

  /** The status the event stream's URL answers now; a stream that opens is closed at once. */
  private async probe(): Promise<{ status: number; code: string; message: string }> {
    // Without an id there is nothing to resume: the next stream must come from a new registration.
    if (this.lastEventId === undefined) return { status: 404, code: 'peer_not_found', message: 'no event was received yet' };
    const abort = new AbortController();
    let response: Response;
    try {
      response = await fetch(`${this.origin}/events/${this.path}${this.streamQuery(this.lastEventId)}`, { signal: abort.signal });
    } catch {
      throw new UnreachableError(`cannot reach the signalling server at ${this.origin}`);
    }
    if (response.ok) {
      abort.abort();
      return { status: 200, code: '', message: '' };
    }
    const body = (await response.json().catch(() => ({}))) as { error?: string; message?: string };
    return { status: response.status, code: body.error ?? '', message: body.message ?? response.statusText };
  }

  /**
   * EventSource and WebSocket cannot set headers: the token and the resume position go in the query (a
   * browser's own EventSource reconnect then adds Last-Event-ID, which the server prefers).
   */
  private streamQuery(lastEventId: string | undefined): string {
    const query = new URLSearchParams();
    if (lastEventId !== undefined) query.set('lastEventId', lastEventId);
    if (this.ownToken !== undefined) query.set('token', this.ownToken);
    const text = query.toString();
    return text ? `?${text}` : '';
  }

  private authorization(): Record<string, string> {
    return this.ownToken === undefined ? {} : { authorization: `Bearer ${this.ownToken}` };
  }

  private retryLater(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.recover(), this.backoffMs);
    this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs * 2);
  }

  private setState(state: StreamState, detail?: string): void {
    if (state === this.state && detail === undefined) return;
    this.state = state;
    this.events.emit('stream', { state, detail });
  }

  /** One API call; errors become `ApiError` (the server's own words) or `UnreachableError`. */
  private async request(method: string, path: string, body?: unknown, bearer = this.ownToken): Promise<unknown> {
    let response: Response;
    try {
      response = await fetch(`${this.origin}${path}`, {
        method,
        body: body === undefined ? undefined : JSON.stringify(body),
        headers: { ...(bearer === undefined ? {} : { authorization: `Bearer ${bearer}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      });
    } catch {
      throw new UnreachableError(`cannot reach the signalling server at ${this.origin} (${method} ${path.split('?')[0]})`);
    }
    const text = await response.text();
    let json: { error?: string; message?: string } | undefined;
    try {
      json = JSON.parse(text);
    } catch {
      // Not JSON: a proxy's error page, say.
    }
    if (!response.ok) {
      throw new ApiError(response.status, json?.error ?? 'http_error', json?.message ?? `${method} ${path} answered ${response.status} ${response.statusText}`);
    }
    if (json === undefined) throw new ApiError(response.status, 'bad_answer', `${method} ${path} did not answer with JSON`);
    return json;
  }
}

/** The tab's sessionStorage, where a browser lets the page have one (not in every private mode). */
function tabStorage(): Storage | undefined {
  try {
    return globalThis.sessionStorage;
  } catch {
    return undefined;
  }
}

/** The RTCIceServer an answer describes, without the server's `ttl`. */
function iceServer({ urls, username, credential }: IceServer & { ttl?: number }): IceServer {
  return username === undefined ? { urls } : { urls, username, credential };
}
