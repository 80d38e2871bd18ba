// The ceiling: a bare Bun WebSocket relay. /<pair>/<role> pairs two sockets; each text frame goes to the
// other one unread (with --json: parsed and serialised again, the least a relay that checks frames does).
import type { ServerWebSocket } from 'bun';
import { serving } from './serving';

interface Peer {
  pair: string;
  role: string;
}
const json = process.argv.includes('--json');
const pairs = new Map<string, Map<string, ServerWebSocket<Peer>>>();

const server = Bun.serve<Peer>({
  port: 0,
  hostname: '127.0.0.1',
  fetch(request, server) {
    const [, pair = '', role = ''] = new URL(request.url).pathname.split('/');
    if (server.upgrade(request, { data: { pair, role } })) return undefined;
    return new Response('upgrade expected', { status: 426 });
  },
  websocket: {
    open(ws) {
      let pair = pairs.get(ws.data.pair);
      if (!pair) pairs.set(ws.data.pair, (pair = new Map()));
      pair.set(ws.data.role, ws);
    },
    message(ws, message) {
      const pair = pairs.get(ws.data.pair);
      if (!pair) return;
      const text = json ? JSON.stringify(JSON.parse(String(message))) : message;
      for (const [role, other] of pair) if (role !== ws.data.role) other.send(text);
    },
    close(ws) {
      pairs.get(ws.data.pair)?.delete(ws.data.role);
    },
  },
});
await serving(server.port);
