// A reverse proxy in front of the server that the test controls: it passes everything through, and can
// cut one peer's event stream at a chosen event, dropping that event and all after it on the floor,
// the way a failing network or proxy loses what was in flight. The server wrote those events; the client never
// saw them. Only the client's Last-Event-ID and the server's resume window can bring them back.

export interface SeenEvent {
  /** Which /events request of that peer carried it: 0 for the first, 1 for the first reconnect, … */
  connection: number;
  id: string;
  type: string;
}

export interface StreamRequest {
  connection: number;
  /** The Last-Event-ID the client resumed from (header or query), if any. */
  lastEventId: string | null;
}

export interface CuttingProxy {
  url: string;
  /** Cut `peerId`'s stream, in its connection number `connection`, at the first event of type `type`. */
  cutAt(peerId: string, connection: number, type: string): void;
  /** Events that reached the client, per peer. */
  delivered(peerId: string): SeenEvent[];
  /** Events the proxy read from the server but dropped. */
  dropped(peerId: string): SeenEvent[];
  /** Every /events request of the peer, in order. */
  requests(peerId: string): StreamRequest[];
  stop(): Promise<void>;
}

const FRAME_END = /\r\n\r\n|\n\n|\r\r/;

export function startCuttingProxy(upstream: string): CuttingProxy {
  const cuts = new Map<string, { connection: number; type: string }[]>();
  const delivered = new Map<string, SeenEvent[]>();
  const dropped = new Map<string, SeenEvent[]>();
  const requests = new Map<string, StreamRequest[]>();
  const list = <T>(map: Map<string, T[]>, key: string) => {
    let items = map.get(key);
    if (!items) map.set(key, (items = []));
    return items;
  };

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    idleTimeout: 0,
    async fetch(request) {
      const url = new URL(request.url);
      const abort = new AbortController();
      request.signal.addEventListener('abort', () => abort.abort(), { once: true });
      const headers = new Headers(request.headers);
      headers.delete('host');
      const response = await fetch(`${upstream}${url.pathname}${url.search}`, {
        method: request.method,
        headers,
        body: request.method === 'GET' || request.method === 'HEAD' ? undefined : await request.arrayBuffer(),
        signal: abort.signal,
        redirect: 'manual',
        decompress: false,
      });
      const events = /^\/events\/[^/]+\/([^/]+)$/.exec(url.pathname);
      if (!events || !response.ok || !response.body) return new Response(response.body, response);

      const peerId = decodeURIComponent(events[1] as string);
      const seen = list(requests, peerId);
      const connection = seen.length;
      seen.push({ connection, lastEventId: request.headers.get('last-event-id') ?? url.searchParams.get('lastEventId') });
      const cut = list(cuts, peerId).find((c) => c.connection === connection);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const encoder = new TextEncoder();
      let buffer = '';
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          for (;;) {
            const end = FRAME_END.exec(buffer);
            if (end) {
              const frame = buffer.slice(0, end.index + end[0].length);
              buffer = buffer.slice(end.index + end[0].length);
              const id = /^id: ?(.*)$/m.exec(frame)?.[1] ?? '';
              const data = /^data: ?(.*)$/m.exec(frame)?.[1];
              const type = data ? String((JSON.parse(data) as { type?: string }).type) : '';
              if (cut && type === cut.type) {
                list(dropped, peerId).push({ connection, id, type });
                // Whatever else the server already sent is lost with the connection.
                for (const rest of buffer.split(FRAME_END)) {
                  const restData = /^data: ?(.*)$/m.exec(rest)?.[1];
                  if (restData) list(dropped, peerId).push({ connection, id: /^id: ?(.*)$/m.exec(rest)?.[1] ?? '', type: String(JSON.parse(restData).type) });
                }
                abort.abort();
                // Ended cleanly so that every frame passed on before the cut reaches the client for sure
                // (an error would drop frames still in the socket's buffer). EventSource reconnects either way.
                controller.close();
                return;
              }
              if (type) list(delivered, peerId).push({ connection, id, type });
              controller.enqueue(encoder.encode(frame));
              return;
            }
            const { value, done } = await reader.read();
            if (done) {
              controller.close();
              return;
            }
            buffer += decoder.decode(value, { stream: true });
          }
        },
        cancel() {
          abort.abort();
        },
      });
      return new Response(body, { status: response.status, headers: response.headers });
    },
  });

  return {
    url: `http://127.0.0.1:${server.port}`,
    cutAt: (peerId, connection, type) => list(cuts, peerId).push({ connection, type }),
    delivered: (peerId) => delivered.get(peerId) ?? [],
    dropped: (peerId) => dropped.get(peerId) ?? [],
    requests: (peerId) => requests.get(peerId) ?? [],
    stop: () => server.stop(true),
  };
}
