// The ceiling for an HTTP + SSE relay on Bun: the seed's routes on a bare Bun.serve, doing the least a
// relay does. POST /register answers {}; GET /events opens a stream (retry and id lines first, as
// switchboard's); POST /message parses the body, and writes `{type, payload, senderId}` to the target's
// open stream. No validation, no ids kept for resume, no held messages, no limits, no logs.
import { serving } from './serving';

const encoder = new TextEncoder();
const streams = new Map<string, ReadableStreamDefaultController<Uint8Array>>();
let ids = 0;
const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

const server = Bun.serve({
  port: 0,
  hostname: '127.0.0.1',
  idleTimeout: 0,
  routes: {
    '/register/:sessionId/:peerId': { POST: () => json({ message: 'session registered successfully', lastEventId: 0 }) },
    '/events/:sessionId/:peerId': {
      GET: (request) => {
        const key = `${request.params.sessionId}/${request.params.peerId}`;
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            streams.set(key, controller);
            controller.enqueue(encoder.encode('retry: 1000\n\nid: 0\n\n'));
          },
          cancel() {
            streams.delete(key);
          },
        });
        return new Response(body, { headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } });
      },
    },
    '/message/:sessionId/:peerId': {
      POST: async (request) => {
        const { type, payload, target } = (await request.json()) as { type: string; payload: unknown; target: string };
        const stream = streams.get(`${request.params.sessionId}/${target}`);
        if (!stream) return json({ error: 'target_not_found' }, 404);
        stream.enqueue(encoder.encode(`id: ${++ids}\ndata: ${JSON.stringify({ type, payload, senderId: request.params.peerId })}\n\n`));
        return json({ message: 'Message sent' });
      },
    },
  },
  fetch: () => json({ error: 'not_found' }, 404),
});
await serving(server.port);
