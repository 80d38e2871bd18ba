import type { Clock } from '../clock';
import type { IceServer } from './ice-servers';

export interface CloudflareTurnOptions {
  keyId: string;
  apiToken: string;
  /** Base URL of the Realtime API, without the trailing slash: `https://rtc.live.cloudflare.com/v1`. */
  apiUrl: string;
  /** Lifetime asked for each credential, in seconds. */
  ttlS: number;
  /** What `/iceServers` serves while Cloudflare cannot be asked: the configured STUN servers. */
  fallback: IceServer;
  clock: Clock;
  /** Where a failed refresh is reported. */
  log?: (message: string) => void;
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
  /** An upstream answer that takes longer than this is given up on. */
  timeoutMs?: number;
  /** After a failure, the API is asked again only this much later; requests meanwhile get the fallback. */
  retryMs?: number;
}

interface Cached {
  urls: string[];
  username: string;
  credential: string;
  /** When Cloudflare stops accepting the credential, ms since the epoch. */
  expiresAt: number;
  /** When to ask for a new one: most of the lifetime is used, the rest is left to the clients. */
  refreshAt: number;
}

/** Share of a credential's lifetime it is served for before a new one is asked for. */
const SERVE_SHARE = 0.75;
/** A credential this close to its end is not handed out any more. */
const MIN_LEFT_MS = 60_000;

/**
 * TURN credentials from Cloudflare Realtime (`POST …/turn/keys/<keyId>/credentials/generate-ice-servers`),
 * flattened into the seed's single `{urls, username, credential}` entry. One upstream call serves every
 * request until most of the credential's lifetime has passed; concurrent requests share one refresh. When
 * Cloudflare fails (an error status, a body that is not the documented answer, no answer in time), the
 * credential still valid is kept, or else the STUN fallback is served, and the reason is logged.
 */
export class CloudflareTurn {
  private cached: Cached | undefined;
  private refreshing: Promise<void> | undefined;
  /** No new attempt before this time after a failure. */
  private retryAt = 0;
  private readonly log: (message: string) => void;
  private readonly fetch: (url: string, init: RequestInit) => Promise<Response>;
  private readonly timeoutMs: number;
  private readonly retryMs: number;

  constructor(private readonly options: CloudflareTurnOptions) {
    this.log = options.log ?? ((message) => console.warn(message));
    this.fetch = options.fetch ?? ((url, init) => fetch(url, init));
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.retryMs = options.retryMs ?? 30_000;
  }

  /** The entry to serve now, asking Cloudflare first when the cached one is due for renewal. */
  async get(): Promise<IceServer> {
    const ready = this.inHand();
    if (ready) return ready;
    this.refreshing ??= this.refresh().finally(() => {
      this.refreshing = undefined;
    });
    await this.refreshing;
    return this.servable(this.options.clock.now());
  }

  /**
   * The entry `get` would serve without asking Cloudflare: the cached one before it is due for renewal,
   * and, while a failed call's retry waits, the one still valid or the fallback. Undefined when `get`
   * would ask first (no credential yet, or one due and Cloudflare may be asked).
   */
  inHand(): IceServer | undefined {
    const now = this.options.clock.now();
    const cached = this.cached;
    if (cached && now < cached.refreshAt) return this.serve(cached, now);
    return now < this.retryAt ? this.servable(now) : undefined;
  }

  /** The credential if it has long enough left, else the fallback. */
  private servable(now: number): IceServer {
    const usable = this.cached && now < this.cached.expiresAt - MIN_LEFT_MS ? this.cached : undefined;
    return usable ? this.serve(usable, now) : this.options.fallback;
  }

  private serve(c: Cached, now: number): IceServer {
    return { urls: c.urls, username: c.username, credential: c.credential, ttl: Math.floor((c.expiresAt - now) / 1000) };
  }

  private async refresh(): Promise<void> {
    const { clock, ttlS } = this.options;
    // The lifetime counts from the request, not the answer: never later than Cloudflare's own clock.
    const askedAt = clock.now();
    try {
      const server = flattenIceServers(await this.ask());
      const lifetimeMs = ttlS * 1000;
      this.cached = { ...server, expiresAt: askedAt + lifetimeMs, refreshAt: askedAt + lifetimeMs * SERVE_SHARE };
      this.retryAt = 0;
    } catch (e) {
      this.retryAt = clock.now() + this.retryMs;
      const keep = this.cached && clock.now() < this.cached.expiresAt - MIN_LEFT_MS;
      this.log(
        `iceServers: Cloudflare TURN credentials could not be renewed (${(e as Error).message}); ` +
          `${keep ? 'serving the current ones' : 'serving STUN only'}, next try in ${Math.round(this.retryMs / 1000)} s`,
      );
    }
  }

  /** One call to the API, given up after `timeoutMs` (headers and body alike). */
  private async ask(): Promise<unknown> {
    const { apiUrl, keyId, apiToken, ttlS, clock } = this.options;
    const url = `${apiUrl.replace(/\/+$/, '')}/turn/keys/${encodeURIComponent(keyId)}/credentials/generate-ice-servers`;
    const controller = new AbortController();
    const timedOut = new Error(`no answer within ${this.timeoutMs} ms`);
    const cancel = clock.schedule(this.timeoutMs, () => controller.abort(timedOut));
    try {
      const response = await this.fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ttl: ttlS }),
        signal: controller.signal,
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`${url} answered ${response.status}: ${text.slice(0, 200).trim() || response.statusText}`);
      try {
        return JSON.parse(text);
      } catch {
        throw new Error(`${url} answered ${response.status} with a body that is not JSON`);
      }
    } catch (e) {
      if (controller.signal.aborted) throw timedOut;
      throw e;
    } finally {
      cancel();
    }
  }
}

/** `turn:host:53?transport=udp`: browsers block port 53, and a URL that times out only slows ICE down. */
const PORT_53 = /^[a-z]+:(?:\[[^\]]*\]|[^:?]*):53(?:\?|$)/i;

/**
 * Cloudflare answers `{iceServers: [{urls: [stun…]}, {urls: [turn…], username, credential}]}`. The seed's
 * shape is one entry: every URL of the credentialled entry plus those of entries without credentials
 * (STUN ignores credentials), port-53 URLs dropped. Throws, naming what is wrong, on any other shape.
 */
export function flattenIceServers(answer: unknown): { urls: string[]; username: string; credential: string } {
  const list = (answer as { iceServers?: unknown } | null)?.iceServers;
  if (!Array.isArray(list)) throw new Error('the answer has no iceServers list');
  let turn: { username: string; credential: string } | undefined;
  const urls: string[] = [];
  for (const entry of list as Record<string, unknown>[]) {
    const entryUrls = typeof entry?.urls === 'string' ? [entry.urls] : entry?.urls;
    if (!Array.isArray(entryUrls) || !entryUrls.every((u) => typeof u === 'string')) throw new Error('an iceServers entry has no urls');
    const { username, credential } = entry;
    if (typeof username === 'string' && typeof credential === 'string') {
      // One credential fits one entry: a second credentialled entry cannot be flattened, so it is left out.
      if (turn) continue;
      turn = { username, credential };
    }
    for (const u of entryUrls as string[]) if (!PORT_53.test(u) && !urls.includes(u)) urls.push(u);
  }
  if (!turn) throw new Error('the answer has no TURN credentials');
  if (!urls.some((u) => /^turns?:/i.test(u))) throw new Error('the answer has no TURN URL besides port 53');
  return { urls, ...turn };
}
