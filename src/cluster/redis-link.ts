import { RedisClient } from 'bun';
import { type Cancel, type Clock, systemClock } from '../clock';
import { type Batched, WriteBatcher } from '../delivery/write-batcher';
import { SignalError } from '../errors';
import { type Logger, silentLogger } from '../log/logger';
import type { Script, ScriptLibrary } from './scripts';

export interface RedisLinkOptions {
  url: string;
  /**
   * Loaded at every connection, so that a script's first use is one call sent in order with the
   * others: as a function library where Redis has functions (7 and later) and lets this user load
   * them, else each script for EVALSHA.
   */
  library?: ScriptLibrary;
  /** The one pub/sub channel this instance listens on. */
  channel: string;
  /** Runs for every message on `channel`, once. */
  onMessage(message: string): void;
  /** Runs after each reconnection, once subscribed again: whatever was published meanwhile is lost, so reconcile. */
  onReconnect(): void;
  logger?: Logger;
  /** Real time, for the reconnection backoff (not the instances' clock: Redis does not follow it). */
  timers?: Pick<Clock, 'schedule'>;
  /**
   * A command unanswered for this long means Redis is unreachable even though the connection looks
   * open (a hung server, a network that drops packets without a reset): both connections are dropped,
   * what waits fails with `backend_unavailable`, and the link reconnects.
   */
  commandTimeoutMs?: number;
  /** Monotonic milliseconds, for that timeout. */
  monotonic?: () => number;
}

export const DEFAULT_COMMAND_TIMEOUT_MS = 5000;

interface QueuedCommand {
  client: RedisClient;
  name: string;
  args: string[];
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** Seconds a client is told to wait while Redis cannot be reached. */
export const UNAVAILABLE_RETRY_S = 2;

const unavailable = () => new SignalError('backend_unavailable', 'the session store (Redis) cannot be reached right now; nothing was changed, retry shortly', UNAVAILABLE_RETRY_S);

const FIRST_BACKOFF_MS = 100;
/** The longest wait between two attempts to connect: an instance is back at most this long after Redis is. */
export const MAX_BACKOFF_MS = 5000;

/**
 * The connections of one instance to Redis: one for commands, one subscribed to the instance's channel.
 *
 * Bun's client is used with its own reconnection off, because of how it behaves (measured, Bun 1.4):
 * a subscription is not restored after it reconnects, and subscribing again on the same client
 * delivers every message twice; a client in subscriber mode is kept for that alone (`duplicate()`);
 * `psubscribe` is not usable, so each instance has one plain channel. So on any loss this link drops
 * both connections, and reconnects with fresh ones, with a backoff: the subscriber is a new
 * `duplicate()` subscribed exactly once, then `onReconnect` lets the owner fetch from the per-peer logs
 * whatever was published while it was deaf. Commands never wait for a connection (no offline queue):
 * while Redis is down they fail at once with `backend_unavailable`, so that nothing is acknowledged that
 * was not stored.
 */
export class RedisLink implements Batched {
  private client: RedisClient | undefined;
  private subscriber: RedisClient | undefined;
  private up = false;
  private everUp = false;
  private closed = false;
  private connecting: Promise<void> | undefined;
  private retry: Cancel | undefined;
  private backoffMs = FIRST_BACKOFF_MS;
  private readonly shas = new Map<string, string>();
  /** Whether the connected Redis runs the scripts as the library's functions (FCALL), else by EVALSHA. */
  private functions = false;
  private readonly logger: Logger;
  private readonly timers: Pick<Clock, 'schedule'>;
  private readonly timeoutMs: number;
  private readonly monotonic: () => number;
  /** Commands sent and not answered yet, and since when some have been waiting with no answer. */
  private waiting = 0;
  private quietSince = 0;
  /** Commands sent during this turn of the loop: they go to the client after it, together (`flush`). */
  private batch: QueuedCommand[] = [];
  /** What holds commands of this turn to send as one (`hold`). */
  private holder: Batched | undefined;
  private flushing = false;
  private readonly turn = new WriteBatcher();
  private watchdog: Cancel | undefined;

  constructor(private readonly options: RedisLinkOptions) {
    this.logger = options.logger ?? silentLogger;
    this.timers = options.timers ?? systemClock;
    this.timeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.monotonic = options.monotonic ?? (() => performance.now());
  }

  /** The channel this instance listens on; its connections are named after it in CLIENT LIST. */
  get channel(): string {
    return this.options.channel;
  }

  /** Whether both connections are up. */
  get isUp(): boolean {
    return this.up;
  }

  /** Connects (or keeps trying in the background); resolves after the first attempt either way. */
  start(): Promise<void> {
    return this.connect();
  }

  /** Whether Redis answers now: for /readyz. */
  async ping(): Promise<boolean> {
    if (!this.up || !this.client) return false;
    return (await this.send(this.client, 'PING', [])) === 'PONG';
  }

  /** How the connected Redis runs the scripts: 'functions' (FCALL) or 'eval' (EVALSHA). */
  get scriptsRunAs(): 'functions' | 'eval' {
    return this.functions ? 'functions' : 'eval';
  }

  /** Runs a script (FCALL or EVALSHA, loading it again after a Redis restart that lost it). */
  async eval(script: Script, args: string[]): Promise<unknown> {
    const client = this.up ? this.ready() : await this.firstConnection();
    const library = this.options.library;
    if (this.functions && library) {
      const call = [library.functionOf(script), '0', ...args];
      try {
        return await this.send(client, 'FCALL', call);
      } catch (e) {
        if (!(e instanceof Error && e.message.includes('Function not found'))) throw this.failure(e);
      }
      try {
        await this.send(client, 'FUNCTION', ['LOAD', 'REPLACE', library.source]);
        return await this.send(client, 'FCALL', call);
      } catch (e) {
        throw this.failure(e);
      }
    }
    const sha = this.shas.get(script.name);
    try {
      if (sha !== undefined) return await this.send(client, 'EVALSHA', [sha, '0', ...args]);
    } catch (e) {
      if (!(e instanceof Error && e.message.startsWith('NOSCRIPT'))) throw this.failure(e);
    }
    try {
      const loaded = (await this.send(client, 'SCRIPT', ['LOAD', script.source])) as string;
      this.shas.set(script.name, loaded);
      return await this.send(client, 'EVALSHA', [loaded, '0', ...args]);
    } catch (e) {
      throw this.failure(e);
    }
  }

  /** Any other command. */
  async command(name: string, args: string[]): Promise<unknown> {
    const client = this.up ? this.ready() : await this.firstConnection();
    try {
      return await this.send(client, name, args);
    } catch (e) {
      throw this.failure(e);
    }
  }

  /**
   * Lets `sink` hold commands for this turn of the loop (the turn's messages, to be sent as one): it is
   * flushed when the turn's commands go to Redis, or before any other command of the turn, so that
   * every command still goes in the order it was given.
   */
  hold(sink: Batched): void {
    if (this.holder === sink) return;
    this.releaseHolder();
    this.holder = sink;
    if (this.batch.length === 0) this.turn.add(this);
  }

  private releaseHolder(): void {
    const holder = this.holder;
    this.holder = undefined;
    holder?.flush();
  }

  /** Sends one command, counted for the watchdog, with the others of its turn of the loop (`flush`). */
  private async send(client: RedisClient, name: string, args: string[]): Promise<unknown> {
    this.releaseHolder();
    if (this.waiting++ === 0) this.quietSince = this.monotonic();
    try {
      return await new Promise((resolve, reject) => {
        this.batch.push({ client, name, args, resolve, reject });
        if (this.batch.length === 1 && !this.flushing) this.turn.add(this);
      });
    } finally {
      this.waiting--;
      this.quietSince = this.monotonic();
    }
  }

  /**
   * Gives Redis's client the commands of a turn of the loop together, after it. The client pipelines
   * what it is given before the microtasks run out, in one write; but each request a listener answers
   * is a task of its own, so that commands sent from their handlers went out one write each (and
   * Redis read them one read each).
   */
  flush(): void {
    // What the holder sends now joins this batch rather than waiting for the next turn.
    this.flushing = true;
    try {
      this.releaseHolder();
    } finally {
      this.flushing = false;
    }
    const batch = this.batch;
    this.batch = [];
    for (const { client, name, args, resolve, reject } of batch) {
      try {
        client.send(name, args).then(resolve, reject);
      } catch (e) {
        reject(e);
      }
    }
  }

  /** Every quarter of the timeout: commands waiting with no answer for the whole timeout mean Redis is gone. */
  private watch(): void {
    this.watchdog?.();
    this.watchdog = this.timers.schedule(Math.max(10, this.timeoutMs / 4), () => {
      this.watchdog = undefined;
      if (this.closed || !this.up) return;
      if (this.waiting > 0 && this.monotonic() - this.quietSince > this.timeoutMs) {
        this.logger.warn('Redis has not answered in time', { timeoutMs: this.timeoutMs });
        this.lost();
        return;
      }
      this.watch();
    });
  }

  /** Closes both connections for good. */
  close(): void {
    this.closed = true;
    this.retry?.();
    this.watchdog?.();
    this.drop();
  }

  /** Before the first connection is made, a command waits for that attempt rather than failing. */
  private async firstConnection(): Promise<RedisClient> {
    if (!this.everUp && this.connecting) await this.connecting;
    return this.ready();
  }

  private ready(): RedisClient {
    if (!this.up || !this.client) throw unavailable();
    return this.client;
  }

  /** A refusal by Redis itself (a script error) is a bug; anything else means it cannot be reached. */
  private failure(e: unknown): Error {
    if (e instanceof Error && (e as { code?: string }).code === 'ERR_REDIS_SERVER_ERROR') return e;
    this.lost();
    return unavailable();
  }

  private connect(): Promise<void> {
    this.connecting ??= this.attempt().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async attempt(): Promise<void> {
    const options = { autoReconnect: false, enableOfflineQueue: false, connectionTimeout: 5000 };
    const client = new RedisClient(this.options.url, options);
    let subscriber: RedisClient | undefined;
    let cancel: Cancel = () => {};
    try {
      // A server that accepts the connection but never answers must not stall the attempt.
      const timedOut = new Promise<never>((_, reject) => {
        cancel = this.timers.schedule(this.timeoutMs, () => reject(new Error(`no answer within ${this.timeoutMs} ms`)));
      });
      await Promise.race([
        timedOut,
        (async () => {
          client.onclose = () => this.lost();
          await client.connect();
          subscriber = await client.duplicate();
          subscriber.onclose = () => this.lost();
          if (!subscriber.connected) await subscriber.connect();
          // Named, so that CLIENT LIST shows which instance each connection is.
          await client.send('CLIENT', ['SETNAME', `${this.options.channel}:commands`]);
          await subscriber.send('CLIENT', ['SETNAME', `${this.options.channel}:subscriber`]);
          await subscriber.subscribe(this.options.channel, (message) => this.options.onMessage(message));
          await this.load(client);
        })(),
      ]);
      cancel();
    } catch (e) {
      cancel();
      client.onclose = null;
      client.close();
      if (subscriber) {
        subscriber.onclose = null;
        subscriber.close();
      }
      if (!this.closed) {
        this.logger.warn('cannot reach Redis; retrying', { error: (e as Error).message, retryInMs: this.backoffMs });
        this.scheduleRetry();
      }
      return;
    }
    if (this.closed || !subscriber) {
      client.close();
      subscriber?.close();
      return;
    }
    this.client = client;
    this.subscriber = subscriber;
    this.up = true;
    this.backoffMs = FIRST_BACKOFF_MS;
    this.watch();
    const again = this.everUp;
    this.everUp = true;
    this.logger.info(again ? 'Redis reachable again' : 'connected to Redis');
    if (again) this.options.onReconnect();
  }

  /**
   * Loads the scripts at every connection (Redis keeps scripts only until it restarts, and a server
   * behind the same address may be another one): the library where Redis takes it, else every script,
   * all sent at once (one round trip, not one per script: the attempt has REDIS_TIMEOUT_MS in all).
   */
  private async load(client: RedisClient): Promise<void> {
    const library = this.options.library;
    this.shas.clear();
    this.functions = false;
    if (!library) return;
    try {
      await client.send('FUNCTION', ['LOAD', 'REPLACE', library.source]);
      this.functions = true;
      await this.deleteOtherVersions(client, library);
      return;
    } catch (e) {
      // Redis before 7 has no FUNCTION; an ACL may deny it. Anything else is the connection's failure.
      if ((e as { code?: string }).code !== 'ERR_REDIS_SERVER_ERROR') throw e;
      this.logger.info('Redis does not load function libraries here; running the scripts by EVALSHA', { reason: (e as Error).message });
    }
    const loaded = await Promise.all(library.scripts.map(async (script) => [script.name, (await client.send('SCRIPT', ['LOAD', script.source])) as string] as const));
    for (const [name, sha] of loaded) this.shas.set(name, sha);
  }

  /**
   * Deletes the libraries of other versions of switchboard, so that one library stays in Redis, not
   * one per version ever deployed. An instance of another version still running (a rolling upgrade)
   * loads its own again at its next call, as after a Redis restart.
   */
  private async deleteOtherVersions(client: RedisClient, library: ScriptLibrary): Promise<void> {
    try {
      const listed = (await client.send('FUNCTION', ['LIST', 'LIBRARYNAME', library.versionsGlob])) as { library_name?: string }[];
      const others = listed.map((l) => l.library_name).filter((name): name is string => name !== undefined && name !== library.name && library.isVersion(name));
      await Promise.all(others.map((name) => client.send('FUNCTION', ['DELETE', name])));
    } catch (e) {
      // An ACL may let this user load a library but not list or delete them: the old ones stay.
      if ((e as { code?: string }).code !== 'ERR_REDIS_SERVER_ERROR') throw e;
      this.logger.debug('could not delete the function libraries of other versions', { reason: (e as Error).message });
    }
  }

  /** Either connection failed: drop both, and reconnect with fresh ones. */
  private lost(): void {
    if (!this.up) return;
    this.up = false;
    this.logger.warn('lost the connection to Redis; reconnecting');
    this.drop();
    if (!this.closed) this.scheduleRetry();
  }

  private drop(): void {
    this.up = false;
    for (const c of [this.client, this.subscriber]) {
      if (!c) continue;
      c.onclose = null;
      c.close();
    }
    this.client = undefined;
    this.subscriber = undefined;
  }

  private scheduleRetry(): void {
    this.retry?.();
    const delay = this.backoffMs;
    this.backoffMs = Math.min(MAX_BACKOFF_MS, this.backoffMs * 2);
    this.retry = this.timers.schedule(delay, () => {
      this.retry = undefined;
      if (!this.closed) void this.connect();
    });
  }
}
