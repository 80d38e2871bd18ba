// The seed API from a device's side, outside a browser: POST /register (its answer carries the ICE
// servers; GET /iceServers with the peer token from a server that sends none), then the event
// stream (SSE read with fetch, or one WebSocket) kept open for as long as the device runs. A cut stream
// resumes from the last event id (Last-Event-ID, ?lastEventId=): the server replays what was missed and
// nothing is renegotiated. A stream the server refuses is asked why, and the device registers again when
// its registration is gone. The browser client's SignalChannel does the same with EventSource.
import { ApiError } from '../client/sdk/signalling';

export { ApiError };

/** An event as the server sends it. */
export interface Signal {
  type: string;
  senderId?: string;
  payload?: unknown;
}

export type Transport = 'sse' | 'ws';
export type SessionMode = 'mesh' | 'relay';
export type StreamState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** One ICE server in the form werift takes (one URL per entry). */
export interface DeviceIceServer {
  urls: string;
  username?: string;
  credential?: string;
}

/** The seed's one RTCIceServer entry, as `GET /iceServers` and a registration's answer give it. */
interface IceAnswer {
  urls?: string | string[];
  username?: string;
  credential?: string;
}

/** What POST /register answered. */
export interface Registration {
  peers: string[];
  mode: SessionMode;
  /** The ICE servers the registration's answer carried; undefined from a server that sends none. */
  iceServers?: DeviceIceServer[];
}

export interface ChannelOptions {
  /** The server's origin, e.g. `https://signal.example.com`. */
  origin: string;
  sessionId: string;
  peerId: string;
  transport: Transport;
  /** The mode of a session this registration creates. */
  mode: SessionMode;
  /**
   * Presented at every registration as `Authorization: Bearer` (a JWT, an invite). Without it a
   * registration made again presents the previous one's token, which is what takes an id over.
   */
  token?: string;
  /** A stream silent this long is taken for dead (a ping comes every PING_INTERVAL_MS, 10 s by default). */
  silenceMs?: number;
}

export interface ChannelEvents {
  /** Every event but `ping`, in the server's order. */
  signal(signal: Signal): void;
  stream(state: StreamState, detail: string): void;
  /** Registered anew after the old registration was gone: every connection starts over with `peers`. */
  registered(registration: Registration): void;
}

const FIRST_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30_000;
const DEFAULT_SILENCE_MS = 30_000;
const FRAME_END = /\r\n\r\n|\n\n|\r\r/;

export class DeviceChannel {
  /** Streams that resumed from the last event id, and registrations made again. */
  resumes = 0;
  reRegistrations = 0;
  mode: SessionMode;
  private lastEventId: string | undefined;
  /** This registration's token: it authorises the device's other requests. */
  private peerToken: string | undefined;
  private ended = false;
  private resuming = false;
  private backoffMs = FIRST_BACKOFF_MS;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private abort: AbortController | undefined;
  private socket: WebSocket | undefined;
  /** POSTs go one at a time: the server keeps the order it answered them in. */
  private sending: Promise<unknown> = Promise.resolve();
  private messageId = 0;
  private readonly path: string;

  constructor(
    private readonly options: ChannelOptions,
    private readonly on: ChannelEvents,
  ) {
    this.path = `${encodeURIComponent(options.sessionId)}/${encodeURIComponent(options.peerId)}`;
    this.mode = options.mode;
  }

  /** `GET /iceServers` with the peer token (TURN credentials need it outside AUTH_MODE=open). */
  async iceServers(): Promise<DeviceIceServer[]> {
    const query = new URLSearchParams({ sessionId: this.options.sessionId, peerId: this.options.peerId });
    return deviceIceServers((await this.request('GET', `/iceServers?${query}`)) as IceAnswer);
  }

  /** `POST /register` as a publisher. */
  async register(): Promise<Registration> {
    const query = new URLSearchParams({ mode: this.options.mode, role: 'publish' });
    const credential = this.options.token ?? this.peerToken;
    const answer = (await this.request('POST', `/register/${this.path}?${query}`, undefined, credential)) as {
      peers?: string[];
      token?: string;
      lastEventId?: number;
      mode?: SessionMode;
      iceServers?: IceAnswer;
    };
    this.peerToken = answer.token;
    this.mode = answer.mode ?? 'mesh';
    // The first stream opens from here: even its loss before its first event loses nothing.
    this.lastEventId = answer.lastEventId === undefined ? undefined : String(answer.lastEventId);
    return { peers: answer.peers ?? [], mode: this.mode, iceServers: answer.iceServers && deviceIceServers(answer.iceServers) };
  }

  /** Opens the event stream and keeps it open until `leave()` or `close()`. */
  open(): void {
    this.ended = false;
    this.connect();
  }

  /** One message to `target`: on the WebSocket while it is open, else `POST /message` (429 waits Retry-After). */
  send(type: string, payload: unknown, target: string): Promise<void> {
    const next = this.sending.then(async () => {
      if (this.ended) return;
      const socket = this.socket;
      if (socket?.readyState === WebSocket.OPEN) return socket.send(JSON.stringify({ id: ++this.messageId, type, payload, target }));
      for (let attempt = 0; ; attempt++) {
        try {
          await this.request('POST', `/message/${this.path}`, { type, payload, target });
          return;
        } catch (e) {
          if (!(e instanceof ApiError) || e.status !== 429 || attempt >= 4 || this.ended) throw e;
          await Bun.sleep(1000 * (attempt + 1));
        }
      }
    });
    this.sending = next.catch(() => undefined);
    return next;
  }

  /** Ends the stream and the registration (`DELETE /register`). */
  async leave(): Promise<void> {
    const registered = this.peerToken !== undefined || this.lastEventId !== undefined;
    this.close();
    if (!registered) return;
    await fetch(`${this.options.origin}/register/${this.path}`, { method: 'DELETE', headers: this.authorization() }).catch(() => undefined);
  }

  /** Ends the stream, leaving the registration to time out. */
  close(): void {
    this.ended = true;
    clearTimeout(this.retryTimer);
    this.abort?.abort();
    this.socket?.close();
    this.socket = undefined;
    this.on.stream('closed', 'stopped');
  }

  private connect(): void {
    if (this.ended) return;
    this.on.stream(this.resuming ? 'reconnecting' : 'connecting', `from event ${this.lastEventId ?? '(none)'}`);
    if (this.options.transport === 'ws') this.connectSocket();
    else void this.readEvents();
  }

  /** GET /events, read as it comes; a stream that ends or falls silent is resumed. */
  private async readEvents(): Promise<void> {
    const abort = new AbortController();
    this.abort = abort;
    let response: Response;
    try {
      response = await fetch(`${this.options.origin}/events/${this.path}${this.streamQuery()}`, {
        headers: { accept: 'text/event-stream', ...this.authorization(), ...(this.lastEventId === undefined ? {} : { 'last-event-id': this.lastEventId }) },
        signal: abort.signal,
      });
    } catch (e) {
      if (!abort.signal.aborted) this.lost(`cannot reach ${this.options.origin} (${(e as Error).message})`);
      return;
    }
    if (!response.ok || !response.body) {
      const body = (await response.json().catch(() => ({}))) as { error?: string; message?: string };
      this.refused(response.status, body.error ?? '', body.message ?? response.statusText);
      return;
    }
    this.opened();
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let silence = this.watch(abort);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        clearTimeout(silence);
        silence = this.watch(abort);
        buffer += decoder.decode(value, { stream: true });
        for (let end = FRAME_END.exec(buffer); end; end = FRAME_END.exec(buffer)) {
          this.frame(buffer.slice(0, end.index));
          buffer = buffer.slice(end.index + end[0].length);
        }
      }
    } catch {
      // Cut, aborted, or fallen silent: resumed below.
    } finally {
      clearTimeout(silence);
    }
    if (this.abort === abort && !this.ended) this.lost('the event stream ended');
  }

  private watch(abort: AbortController): ReturnType<typeof setTimeout> {
    return setTimeout(() => abort.abort(), this.options.silenceMs ?? DEFAULT_SILENCE_MS);
  }

  /** One SSE frame: its `id:` is the position (even without data, as a bare `id:` line), its `data:` the event. */
  private frame(text: string): void {
    const data: string[] = [];
    let id: string | undefined;
    for (const line of text.split(/\r\n|\r|\n/)) {
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') id = value;
      else if (field === 'data') data.push(value);
      else if (field === 'retry' && /^\d+$/.test(value)) this.backoffMs = Number(value);
    }
    if (id !== undefined) this.lastEventId = id;
    if (data.length) this.event(data.join('\n'));
  }

  private event(json: string): void {
    let signal: Signal;
    try {
      signal = JSON.parse(json) as Signal;
    } catch {
      return;
    }
    if (typeof signal.type !== 'string' || signal.type === 'ping') return;
    this.on.signal(signal);
    if (signal.type === 'session-closed') this.close();
  }

  /** `/ws`: events are frames with a `type` (and their `id`), acks have none. */
  private connectSocket(): void {
    const base = this.options.origin.replace(/^http/, 'ws');
    const socket = new WebSocket(`${base}/ws/${this.path}${this.streamQuery()}`);
    this.socket = socket;
    let opened = false;
    let refusal: { status: number; code: string; message: string } | undefined;
    let silence: ReturnType<typeof setTimeout> | undefined;
    const alive = () => {
      clearTimeout(silence);
      silence = setTimeout(() => socket.close(), this.options.silenceMs ?? DEFAULT_SILENCE_MS);
    };
    socket.onopen = () => {
      opened = true;
      alive();
      this.opened();
    };
    socket.onmessage = (e: MessageEvent) => {
      alive();
      let frame: Signal & { id?: number | string; ack?: unknown; status?: number; error?: string; message?: string };
      try {
        frame = JSON.parse(String(e.data));
      } catch {
        return;
      }
      if (typeof frame.type !== 'string') {
        // An error frame that no message of ours caused: the server is refusing the socket.
        if ((frame.status ?? 0) >= 400 && frame.ack === null) refusal = { status: frame.status ?? 0, code: frame.error ?? '', message: frame.message ?? '' };
        return;
      }
      if (frame.id !== undefined) this.lastEventId = String(frame.id);
      const { id: _, ...signal } = frame;
      this.event(JSON.stringify(signal));
    };
    socket.onclose = (e: CloseEvent) => {
      clearTimeout(silence);
      if (this.socket !== socket || this.ended) return;
      this.socket = undefined;
      if (refusal) return this.refused(refusal.status, refusal.code, refusal.message);
      if (e.code >= 4000) return this.refused(e.code - 4000, e.reason, e.reason);
      // Refused before the upgrade: the same request as an SSE stream says why.
      if (!opened) return void this.probe();
      this.lost(`the socket closed (${e.code})`);
    };
  }

  /** Asks GET /events whether the stream would be taken now, and acts on the answer. */
  private async probe(): Promise<void> {
    const abort = new AbortController();
    try {
      const response = await fetch(`${this.options.origin}/events/${this.path}${this.streamQuery()}`, { headers: this.authorization(), signal: abort.signal });
      if (response.ok) {
        abort.abort();
        return this.lost('the socket was refused, but the stream would be taken');
      }
      const body = (await response.json().catch(() => ({}))) as { error?: string; message?: string };
      this.refused(response.status, body.error ?? '', body.message ?? response.statusText);
    } catch (e) {
      this.lost(`cannot reach ${this.options.origin} (${(e as Error).message})`);
    }
  }

  private opened(): void {
    const resumed = this.resuming;
    this.resuming = false;
    this.backoffMs = FIRST_BACKOFF_MS;
    if (resumed) this.resumes++;
    this.on.stream('open', resumed ? `resumed after event ${this.lastEventId ?? '(none)'}` : `from event ${this.lastEventId ?? '(none)'}`);
  }

  /** The stream was lost without the server refusing it: open it again from the last event id. */
  private lost(why: string): void {
    if (this.ended) return;
    this.resuming = true;
    this.on.stream('reconnecting', `${why}; again in ${this.backoffMs} ms from event ${this.lastEventId ?? '(none)'}`);
    this.retry(() => this.connect());
  }

  /** The server refused the stream: register again if the registration is gone, stop if it was taken over. */
  private refused(status: number, code: string, message: string): void {
    if (this.ended) return;
    if (code === 'superseded') {
      this.close();
      this.on.stream('closed', `another registration of ${this.options.peerId} took it over (${message})`);
      return;
    }
    if (code === 'resume_gap' || code === 'peer_not_found' || code === 'session_not_found') {
      this.on.stream('reconnecting', `cannot resume (${code}: ${message}); registering again`);
      void this.registerAgain();
      return;
    }
    this.on.stream('reconnecting', `the server answered ${status} ${code}: ${message}; again in ${this.backoffMs} ms`);
    this.retry(() => this.connect());
  }

  private async registerAgain(): Promise<void> {
    try {
      const registration = await this.register();
      if (this.ended) return;
      this.reRegistrations++;
      this.resuming = false;
      this.connect();
      this.on.registered(registration);
    } catch (e) {
      this.on.stream('reconnecting', `registering again failed (${(e as Error).message}); again in ${this.backoffMs} ms`);
      this.retry(() => void this.registerAgain());
    }
  }

  private retry(then: () => void): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (!this.ended) then();
    }, this.backoffMs);
    this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs * 2);
  }

  private streamQuery(): string {
    const query = new URLSearchParams();
    if (this.lastEventId !== undefined) query.set('lastEventId', this.lastEventId);
    if (this.peerToken !== undefined) query.set('token', this.peerToken);
    return query.size ? `?${query}` : '';
  }

  private authorization(token = this.peerToken): Record<string, string> {
    return token === undefined ? {} : { authorization: `Bearer ${token}` };
  }

  /** One API call; a refusal becomes an ApiError with the server's code and words. */
  private async request(method: string, path: string, body?: unknown, token = this.peerToken): Promise<unknown> {
    const response = await fetch(`${this.options.origin}${path}`, {
      method,
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: { ...this.authorization(token), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    });
    const json = (await response.json().catch(() => undefined)) as { error?: string; message?: string } | undefined;
    if (!response.ok) throw new ApiError(response.status, json?.error ?? 'http_error', json?.message ?? `${method} ${path.split('?')[0]} answered ${response.status}`);
    if (json === undefined) throw new ApiError(response.status, 'bad_answer', `${method} ${path.split('?')[0]} did not answer with JSON`);
    return json;
  }
}

function deviceIceServers({ urls, username, credential }: IceAnswer): DeviceIceServer[] {
  return [urls ?? []].flat().map((url) => (username === undefined ? { urls: url } : { urls: url, username, credential }));
}
