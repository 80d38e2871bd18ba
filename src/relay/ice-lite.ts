// How the relay, an ICE-lite agent, meets browsers. werift gets three things wrong for it, and offers
// no public way to change them, so this works on its private ICE connection (as `udpSockets` in
// ./link.ts does on its sockets; test/relay/ice-lite.test.ts fails the day an upgrade moves them):
// - it writes `a=ice-lite` into every media section, where browsers do not read it;
// - it answers, and acts on, any binding request: it verifies MESSAGE-INTEGRITY on responses only;
// - it takes a pair only once nominated, a check interval after the browser could have started DTLS;
// - it hands any datagram that is not STUN, from any address, to DTLS and SRTP.
import type { RTCPeerConnection } from 'werift';
import { parseMessage } from 'werift';

/**
 * `a=ice-lite` is a session-level attribute (RFC 8839 §5.3) and browsers read it only there: Chromium,
 * answering an offer that has it in the media sections only, takes the server for a full agent, checks
 * as the controlled side, and loses two check intervals (about 120 ms) to role conflicts before it
 * nominates. The offer says it once, before the first media section.
 */
export function iceLiteAtSessionLevel(sdp: string): string {
  if (!/^a=ice-lite\r?$/m.test(sdp)) return sdp;
  const withoutMedia = sdp.replace(/^a=ice-lite\r?\n/gm, '');
  const firstMedia = withoutMedia.search(/^m=/m);
  return firstMedia < 0 ? withoutMedia : `${withoutMedia.slice(0, firstMedia)}a=ice-lite\r\n${withoutMedia.slice(firstMedia)}`;
}

interface StunRequest {
  getAttributeValue(name: string): unknown;
  readonly attributesKeys: string[];
}
type Address = readonly [string, number];
interface CandidatePair {
  readonly protocol: unknown;
  readonly remoteAddr: Address;
  nominated: boolean;
  updateState(state: number): void;
}
/** One of a connection's sockets (werift's StunProtocol; a TURN or TCP one has no `datagramReceived`). */
interface Protocol {
  onRequestReceived?: { execute: (message: StunRequest, addr: Address, data: Buffer) => void };
  datagramReceived?: (data: Buffer, addr: Address) => void;
}
/** What of werift's ICE connection (`RTCIceTransport.connection`) is read and wrapped here. */
interface IceConnection {
  readonly iceLite: boolean;
  readonly localUsername: string;
  readonly localPassword: string;
  /** The credentials of earlier ICE generations, by ufrag. */
  readonly userHistory: Record<string, string>;
  readonly protocols: Protocol[];
  readonly checkList: CandidatePair[];
  nominated: CandidatePair | undefined;
  checkIncoming(message: StunRequest, addr: Address, protocol: unknown): void;
  checkComplete(pair: CandidatePair): void;
}

/** werift's CandidatePairState.SUCCEEDED. */
const PAIR_SUCCEEDED = 3;
const guarded = new WeakSet<object>();

/**
 * Every ICE connection of `pc`, and each of its sockets, once: what a socket receives is guarded, and a
 * lite connection selects on the first check. Called again as sockets appear (each new candidate).
 */
export function guardChecks(pc: RTCPeerConnection): void {
  for (const transport of pc.iceTransports) {
    const connection = transport.connection as unknown as IceConnection;
    for (const protocol of connection.protocols) {
      if (guarded.has(protocol)) continue;
      guarded.add(protocol);
      authenticate(connection, protocol);
      fromPairsOnly(connection, protocol);
    }
    if (connection.iceLite) selectOnFirstCheck(connection);
  }
}

/**
 * A binding request must name this connection's ufrag (or an earlier generation's) and carry a
 * MESSAGE-INTEGRITY made with its password (RFC 8445 §7.3); any other is dropped unanswered. werift
 * checks neither: anyone who reached the port could have nominated a pair of their own and been sent
 * the media.
 */
function authenticate(connection: IceConnection, protocol: Protocol): void {
  const requests = protocol.onRequestReceived;
  if (!requests) return;
  const execute = requests.execute;
  requests.execute = (message, addr, data) => {
    if (authentic(connection, message, data)) execute(message, addr, data);
  };
}

/**
 * DTLS and media are taken from the addresses of the connection's candidate pairs only: those the
 * peer's signalling named and those it checked from with the password. werift took a datagram from
 * anywhere: a ClientHello from anyone who reached the port restarted the DTLS handshake of a
 * connected viewer, and every datagram cost its parsing. STUN goes on to `authenticate`.
 */
function fromPairsOnly(connection: IceConnection, protocol: Protocol): void {
  const received = protocol.datagramReceived;
  if (!received) return;
  const paired = ([host, port]: Address) => connection.checkList.some(({ remoteAddr }) => remoteAddr[1] === port && remoteAddr[0] === host);
  protocol.datagramReceived = (data, addr) => {
    // A STUN message's first byte is 0 to 3, DTLS's 20 to 63, RTP's and RTCP's 128 to 191 (RFC 7983).
    if ((data[0] ?? 0) < 4 || paired(addr)) received.call(protocol, data, addr);
  };
}

function authentic(connection: IceConnection, message: StunRequest, data: Buffer): boolean {
  const username = message.getAttributeValue('USERNAME');
  if (typeof username !== 'string') return false;
  const ufrag = username.slice(0, username.indexOf(':'));
  const password = ufrag === connection.localUsername ? connection.localPassword : Object.hasOwn(connection.userHistory, ufrag) ? connection.userHistory[ufrag] : undefined;
  return password !== undefined && parseMessage(data, Buffer.from(password, 'utf8')) !== undefined;
}

/**
 * A lite server's pair is the first one the controlling peer proves with a check, as media servers do
 * (mediasoup's ICE-lite server among them), not the one it nominates later: a browser sends USE-CANDIDATE
 * only on its next check of the pair it selected, about 50 ms after the first, and its DTLS, which it
 * starts as soon as that first check is answered, waited for it. A later nomination of another pair is
 * followed.
 */
function selectOnFirstCheck(connection: IceConnection): void {
  if (guarded.has(connection)) return;
  guarded.add(connection);
  const checkIncoming = connection.checkIncoming.bind(connection);
  connection.checkIncoming = (message, addr, protocol) => {
    checkIncoming(message, addr, protocol);
    const keys = message.attributesKeys;
    if (!keys.includes('ICE-CONTROLLING')) return;
    const pair = connection.checkList.find((p) => p.protocol === protocol && p.remoteAddr[0] === addr[0] && p.remoteAddr[1] === addr[1]);
    if (!pair) return;
    if (!connection.nominated) {
      pair.nominated = true;
      pair.updateState(PAIR_SUCCEEDED);
      connection.checkComplete(pair);
    } else if (keys.includes('USE-CANDIDATE') && connection.nominated !== pair) connection.nominated = pair;
  };
}
