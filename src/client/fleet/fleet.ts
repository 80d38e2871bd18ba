// The fleet view: one viewer per session, in a grid, built on the client library. `?sessions=cam-1,cam-2`
// (or typed); `&transport=sse|ws`. By default the event streams are Server-Sent Events when the page came
// over HTTP/2 (TLS), else one WebSocket per session: over HTTP/1.1 a browser opens at most 6
// connections to one server, and each event stream keeps one, so the seventh camera would never connect.
import { describeError, join } from '../sdk/index';
import type { PeerInfo, Session, Transport } from '../sdk/switchboard';

const ID = /^[A-Za-z0-9._:@|~-]{1,128}$/;
const MAX_SESSIONS = 64;
/** HTTP/1.1's connections per server in Chromium, Firefox and Safari. */
const HTTP1_CONNECTIONS = 6;
/** A tile that has not joined by then, over HTTP/1.1 with SSE, is waiting for a connection that may never come. */
const STALLED_MS = 8_000;
const MAX_RETRY_MS = 30_000;

type TileState = 'joining' | 'waiting' | 'connecting' | 'live' | 'reconnecting' | 'stalled' | 'retrying' | 'ended';

/** One tile, as scripts (the end-to-end tests) read it from `window.fleet.tiles[session]`. */
export interface TileStatus {
  state: TileState;
  /** The event stream: connecting, open, reconnecting, closed. */
  stream: string;
  connection?: RTCPeerConnectionState;
  /** Local ↔ remote candidate types of the pair in use (`host-host`, `relay-srflx`). */
  pair?: string;
  kbps: number;
  fps?: number;
  framesDecoded: number;
  /** Why it is not live, in plain words. */
  why?: string;
}

export interface FleetStatus {
  transport: Transport;
  /** How this page reached the server (`h2`, `http/1.1`), as the browser reports it. */
  protocol: string;
  notice?: string;
  tiles: Record<string, TileStatus>;
}

declare global {
  interface Window {
    fleet: FleetStatus;
  }
}

const byId = <T extends HTMLElement>(id: string): T => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element as T;
};

const STATE_TEXT: Record<TileState, string> = {
  joining: 'joining',
  waiting: 'waiting for the camera',
  connecting: 'connecting',
  live: 'live',
  reconnecting: 'reconnecting',
  stalled: 'no free connection',
  retrying: 'retrying',
  ended: 'stopped',
};
const STATE_CLASS: Record<TileState, string> = {
  joining: 'busy',
  waiting: 'busy',
  connecting: 'busy',
  live: 'good',
  reconnecting: 'busy',
  stalled: 'bad',
  retrying: 'bad',
  ended: 'bad',
};

/** One session watched: joins, shows, and joins again after anything but a takeover. */
class Tile {
  readonly root = document.createElement('article');
  readonly status: TileStatus = { state: 'joining', stream: 'closed', kbps: 0, framesDecoded: 0 };
  private readonly video = document.createElement('video');
  private readonly badge = document.createElement('span');
  private readonly facts = document.createElement('p');
  private readonly why = document.createElement('p');
  private session: Session | undefined;
  private retryMs = 2000;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private stalledTimer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  constructor(
    readonly sessionId: string,
    private readonly transport: Transport,
    private readonly limited: boolean,
    private readonly changed: () => void,
  ) {
    this.root.className = 'tile';
    this.root.dataset.session = sessionId;
    this.video.autoplay = true;
    this.video.muted = true;
    this.video.playsInline = true;
    this.video.setAttribute('playsinline', '');
    const header = document.createElement('header');
    const title = document.createElement('h2');
    title.textContent = sessionId;
    header.append(title, this.badge);
    this.facts.className = 'facts';
    this.why.className = 'why';
    this.root.append(this.video, header, this.facts, this.why);
    this.render();
  }

  start(): void {
    if (this.closed) return;
    this.set({ state: 'joining', why: undefined });
    if (this.limited) {
      // Nothing fails over HTTP/1.1 when the connections run out: requests just wait. Say so.
      clearTimeout(this.stalledTimer);
      this.stalledTimer = setTimeout(() => {
        if (this.status.state === 'joining' || (this.status.state === 'waiting' && this.status.stream !== 'open')) {
          this.set({
            state: 'stalled',
            why: `No free connection to the server: over HTTP/1.1 the browser opens at most ${HTTP1_CONNECTIONS}, and the other cameras' event streams hold them.`,
          });
        }
      }, STALLED_MS);
    }
    join({ session: this.sessionId, role: 'view', peer: `fleet-${randomSuffix()}`, transport: this.transport }).then(
      (session) => this.joined(session),
      (e: unknown) => this.retry(describeError(e)),
    );
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.stalledTimer);
    this.session?.leave();
    this.root.remove();
  }

  private joined(session: Session): void {
    if (this.closed) return session.leave();
    this.session = session;
    this.retryMs = 2000;
    this.set({ state: 'waiting', stream: session.signalling.streamState, why: undefined });
    session.on('stream', ({ state, detail }) => {
      this.status.stream = state;
      if (state === 'reconnecting') this.set({ state: 'reconnecting', why: detail ? `${capitalize(detail)}.` : undefined });
      else this.update();
    });
    session.on('track', ({ stream }) => {
      if (this.video.srcObject !== stream) this.video.srcObject = stream;
      this.video.play().catch(() => undefined);
    });
    session.on('connection', () => this.update());
    session.on('connection-closed', () => this.update());
    session.on('error', ({ message, code }) => {
      if (code === 'ice_failed') this.set({ why: message });
    });
    session.on('ended', ({ reason }) => {
      this.session = undefined;
      this.video.srcObject = null;
      if (reason === 'taken-over') this.set({ state: 'ended', why: 'Another viewer took this peer id over.' });
      // The camera's session was closed; it comes back as a new one: watch for it.
      else if (reason === 'session-closed') this.retry('The session was closed; watching for it to start again.');
    });
    this.update();
  }

  private retry(why: string): void {
    if (this.closed) return;
    this.set({ state: 'retrying', why: `${why} Trying again in ${Math.round(this.retryMs / 1000)} s.` });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.start(), this.retryMs);
    this.retryMs = Math.min(MAX_RETRY_MS, this.retryMs * 2);
  }

  /** The state from the session's connections: the one with video, or the first. */
  private update(): void {
    const session = this.session;
    if (!session) return;
    const peers = session.peers();
    const peer: PeerInfo | undefined = peers.find((p) => (p.stats?.framesDecoded ?? 0) > 0) ?? peers[0];
    // No connection: no frozen last frame of a camera that left.
    if (!peer) this.video.srcObject = null;
    const stats = peer?.stats;
    const pair = stats?.pair;
    let state: TileState = 'waiting';
    if (this.status.stream === 'reconnecting' || this.status.stream === 'connecting') state = this.status.stream === 'connecting' ? 'joining' : 'reconnecting';
    else if (peer?.connectionState === 'connected') state = (stats?.framesDecoded ?? 0) > 0 ? 'live' : 'connecting';
    else if (peer?.connectionState === 'disconnected' || peer?.connectionState === 'failed') state = 'reconnecting';
    else if (peer) state = 'connecting';
    if (state !== 'joining') clearTimeout(this.stalledTimer);
    this.set({
      state,
      connection: peer?.connectionState,
      pair: pair ? `${pair.local}-${pair.remote}` : undefined,
      kbps: Math.round(stats?.inKbps ?? 0),
      fps: stats?.framesPerSecond,
      framesDecoded: stats?.framesDecoded ?? 0,
      why: state === 'live' || state === 'connecting' ? undefined : peer?.failure ? `ICE failed: ${peer.failure}` : this.status.why,
    });
  }

  private set(change: Partial<TileStatus>): void {
    Object.assign(this.status, change);
    this.render();
    this.changed();
  }

  private render(): void {
    const s = this.status;
    this.root.dataset.state = s.state;
    this.badge.textContent = STATE_TEXT[s.state];
    this.badge.className = `badge ${STATE_CLASS[s.state]}`;
    const facts = [s.pair ? `path ${s.pair.replace('-', ' ↔ ')}` : 'path —', `${s.kbps} kbit/s`];
    if (s.fps !== undefined) facts.push(`${Math.round(s.fps)} fps`);
    // Lines break between facts, never inside one (a narrow tile on a phone).
    this.facts.textContent = facts.map((fact) => fact.replaceAll(' ', '\u00a0')).join(' · ');
    this.why.textContent = s.why ?? '';
    this.why.hidden = !s.why;
  }
}

const randomSuffix = () => Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, '0')).join('');
const capitalize = (text: string) => `${text.slice(0, 1).toUpperCase()}${text.slice(1)}`;

/** How the browser reached this server: `h2`, `h3`, `http/1.1`. */
function pageProtocol(): string {
  const entry = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming | undefined;
  return entry?.nextHopProtocol || 'unknown';
}

const params = new URLSearchParams(location.search);
const protocol = pageProtocol();
const multiplexed = protocol === 'h2' || protocol === 'h3';
const asked = params.get('transport');
const transport: Transport = asked === 'sse' || asked === 'ws' ? asked : multiplexed ? 'sse' : 'ws';
const fleet: FleetStatus = { transport, protocol, tiles: {} };
window.fleet = fleet;

const input = byId<HTMLInputElement>('sessions');
const summary = byId<HTMLParagraphElement>('summary');
const notice = byId<HTMLParagraphElement>('notice');
const grid = byId<HTMLElement>('grid');
const tiles = new Map<string, Tile>();

function showSummary(): void {
  const all = [...tiles.values()];
  if (all.length === 0) {
    summary.textContent = 'Type the sessions to watch, separated by commas.';
    return;
  }
  const live = all.filter((t) => t.status.state === 'live').length;
  summary.textContent = `${live} of ${all.length} live · events over ${transport === 'ws' ? 'WebSocket' : `Server-Sent Events (${protocol})`}`;
  for (const [id, tile] of tiles) fleet.tiles[id] = tile.status;
}

function showNotice(text: string | undefined): void {
  fleet.notice = text;
  notice.textContent = text ?? '';
  notice.hidden = !text;
}

/** Watches exactly `ids`: new tiles join, removed ones leave. */
function watch(ids: string[]): void {
  const wanted = [...new Set(ids)].slice(0, MAX_SESSIONS);
  const bad = wanted.filter((id) => !ID.test(id));
  const good = wanted.filter((id) => ID.test(id));
  for (const [id, tile] of tiles) {
    if (!good.includes(id)) {
      tile.close();
      tiles.delete(id);
      delete fleet.tiles[id];
    }
  }
  // Event streams over HTTP/1.1 each hold one of the browser's few connections to this server.
  const limited = transport === 'sse' && !multiplexed;
  for (const id of good) {
    if (tiles.has(id)) continue;
    const tile = new Tile(id, transport, limited, showSummary);
    tiles.set(id, tile);
    grid.append(tile.root);
    tile.start();
  }
  const notices: string[] = [];
  if (bad.length) notices.push(`Not session ids (1 to 128 of A-Z a-z 0-9 . _ : @ | ~ -): ${bad.join(', ')}.`);
  if (limited && good.length >= HTTP1_CONNECTIONS) {
    notices.push(
      `This page reached the server over ${protocol}, where the browser opens at most ${HTTP1_CONNECTIONS} connections to it, and each session's event stream keeps one open: ` +
        `of ${good.length} sessions, some will wait for a connection that never frees up. Open the fleet view over HTTPS (the server then speaks HTTP/2), or drop transport=sse to use WebSockets.`,
    );
  }
  if (ids.length > MAX_SESSIONS) notices.push(`Only the first ${MAX_SESSIONS} sessions are watched.`);
  showNotice(notices.join(' ') || undefined);
  showSummary();
}

const parse = (text: string) =>
  text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);

byId<HTMLFormElement>('pick').onsubmit = (e) => {
  e.preventDefault();
  const ids = parse(input.value);
  const query = new URLSearchParams(location.search);
  query.set('sessions', ids.join(','));
  history.replaceState(null, '', `?${query.toString().replaceAll('%2C', ',')}`);
  watch(ids);
};

input.value = parse(params.get('sessions') ?? '').join(', ');
watch(parse(input.value));
// Leaving on unload lets the cameras drop their connections at once rather than after the peer timeout.
addEventListener('pagehide', () => {
  for (const tile of tiles.values()) tile.close();
});
