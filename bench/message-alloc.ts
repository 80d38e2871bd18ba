// Bytes of JavaScript heap allocated per message relayed, from a WebSocket frame's text to the frame
// written for its receiver, in one process without sockets: the frame's text (decoded from its bytes),
// its parse and check, the session rules, the event, the mailbox and the receiver's frame (joined, as a
// socket's write joins it). The
// messages are the relay benchmark's mix: nine ICE candidates (257 B) to one 4 KB SDP offer.
// Run with the collector off, so that what is allocated stays counted:
//   BUN_JSC_useGC=false bun bench/message-alloc.ts [messages, default 20000]
import { memoryUsage } from 'bun:jsc';
import { systemClock } from '../src/clock';
import { defaultConfig } from '../src/config';
import type { EventMembers, EventSink } from '../src/delivery/delivery';
import { LocalDelivery } from '../src/delivery/local';
import { eventBounds } from '../src/delivery/rules';
import { LocalSignalling } from '../src/sessions/local-signalling';
import { SessionStore } from '../src/sessions/store';
import { type ClientFrame, eventFrame, parseClientFrame } from '../src/ws/frames';
import { iceCandidate, sdpOffer } from './signal-payloads';

if (process.env.BUN_JSC_useGC !== 'false') {
  console.error('run with the collector off: BUN_JSC_useGC=false bun bench/message-alloc.ts');
  process.exit(2);
}
const messages = Number(process.argv[2] ?? 20_000);
const config = defaultConfig({ maxQueue: 10 * messages, maxPeerEventBytes: 2 ** 30, maxEventBytes: 2 ** 31, messageRatePerS: 0, peerMessageRatePerS: 0 });
const signalling = new LocalSignalling(config, { store: new SessionStore(), delivery: new LocalDelivery(eventBounds(config), undefined), clock: systemClock });
signalling.register('s', 'a');
signalling.register('s', 'b');

let written = 0;
let bytes = 0;
/** A socket that takes every frame: its write joins the frame's text, as Bun's does. */
const socket: EventSink = {
  isOpen: true,
  begin() {},
  write(id: number, members: EventMembers) {
    written++;
    bytes += Buffer.byteLength(eventFrame(id, members));
    return true;
  },
  close() {},
  abort() {},
  onClose() {},
  onDrain() {},
};
signalling.connect('s', 'b', socket);

const texts = Array.from({ length: 10 }, (_, i) =>
  i === 9 ? JSON.stringify({ type: 'offer', target: 'b', payload: sdpOffer(i) }) : JSON.stringify({ type: 'ice-candidate', target: 'b', payload: iceCandidate(i) }),
);
// Each frame's text is decoded from its bytes, a text of its own, as a socket's frame is.
const encoded = texts.map((text) => new TextEncoder().encode(text));
const decoder = new TextDecoder();
function relay(n: number): void {
  for (let i = 0; i < n; i++) {
    const frame = parseClientFrame(decoder.decode(encoded[i % encoded.length])) as ClientFrame;
    signalling.send('s', 'a', frame);
  }
}

relay(messages); // warm up: the JIT's code and the structures are made once
const before = memoryUsage().current;
relay(messages);
const allocated = memoryUsage().current - before;
console.log(`${(allocated / messages).toFixed(0)} B of heap per message relayed (${messages} messages, frames ${(bytes / written).toFixed(0)} B on average)`);
