// Elysia's own WebSocket layer (`.ws()`) as a relay, with nothing else: what that layer costs per frame
// over bare Bun. /<pair>/<role> as in bare.ts. Prints "listening <port>"; "gc" on stdin → "rss <bytes> heap <bytes>".
import { Elysia } from 'elysia';
import { serving } from './serving';

interface Sendable {
  send(data: string): unknown;
}
const pairs = new Map<string, Map<string, Sendable>>();

const app = new Elysia().ws('/:pair/:role', {
  open(ws) {
    const { pair, role } = ws.data.params;
    let peers = pairs.get(pair);
    if (!peers) pairs.set(pair, (peers = new Map()));
    peers.set(role, ws.raw);
  },
  message(ws, message) {
    const { pair, role } = ws.data.params;
    const text = typeof message === 'string' ? message : JSON.stringify(message);
    for (const [other, socket] of pairs.get(pair) ?? []) if (other !== role) socket.send(text);
  },
  close(ws) {
    pairs.get(ws.data.params.pair)?.delete(ws.data.params.role);
  },
});
app.listen({ port: 0, hostname: '127.0.0.1', reusePort: false, development: false });
await serving(app.server?.port);
