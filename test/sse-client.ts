/** A Server-Sent Events client over fetch, parsing the stream as the EventSource spec does. */

export interface SseEvent {
  id: string;
  data: string;
  /** `data` parsed as JSON. */
  json: Record<string, unknown>;
}

export interface SseConnection {
  readonly status: number;
  readonly headers: Headers;
  /** Every event received so far. */
  readonly events: SseEvent[];
  /** The stream's text as received. */
  readonly raw: string;
  /** The id of the last `id:` field seen, as EventSource keeps it (blocks without data included). */
  readonly lastEventId: string;
  /** The `retry:` value received, if any. */
  readonly retry: number | undefined;
  /** Resolves with the first event (from the start) that matches and was not taken before. */
  next(match?: (e: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>;
  close(): void;
}

export async function openEvents(url: string, init: { lastEventId?: string; headers?: Record<string, string> } = {}): Promise<SseConnection> {
  const abort = new AbortController();
  const headers: Record<string, string> = { accept: 'text/event-stream', ...init.headers };
  if (init.lastEventId !== undefined) headers['last-event-id'] = init.lastEventId;
  const response = await fetch(url, { headers, signal: abort.signal });

  const events: SseEvent[] = [];
  const taken = new Set<SseEvent>();
  const waiters: (() => void)[] = [];
  let lastEventId = init.lastEventId ?? '';
  let retry: number | undefined;
  let done = false;
  let raw = '';
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };

  const ended = (async () => {
    if (!response.ok || !response.body) {
      done = true;
      return;
    }
    const decoder = new TextDecoder();
    let buffer = '';
    let data: string[] = [];
    let idBuffer = lastEventId;
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        const text = decoder.decode(chunk, { stream: true });
        raw += text;
        buffer += text;
        let nl: number;
        while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
          if (line === '') {
            lastEventId = idBuffer;
            if (data.length) {
              const text = data.join('\n');
              events.push({ id: lastEventId, data: text, json: JSON.parse(text) });
              wake();
            }
            data = [];
            continue;
          }
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'data') data.push(value);
          else if (field === 'id' && !value.includes('\0')) idBuffer = value;
          else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value);
        }
      }
    } catch {
      // Aborted by close(), or the connection dropped: either way the stream has ended.
    } finally {
      done = true;
      wake();
    }
  })();

  return {
    status: response.status,
    headers: response.headers,
    events,
    get raw() {
      return raw;
    },
    get lastEventId() {
      return lastEventId;
    },
    get retry() {
      return retry;
    },
    ended,
    close: () => abort.abort(),
    async next(match = () => true, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = events.find((e) => !taken.has(e) && match(e));
        if (found) {
          taken.add(found);
          return found;
        }
        if (done) throw new Error(`stream ended without the expected event; got ${JSON.stringify(events.map((e) => e.json))}`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no matching event within ${timeoutMs} ms; got ${JSON.stringify(events.map((e) => e.json))}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
  };
}

/** Matches events of one type, optionally from one sender. */
export const ofType = (type: string, senderId?: string) => (e: SseEvent) => e.json.type === type && (senderId === undefined || e.json.senderId === senderId);
