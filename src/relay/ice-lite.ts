// How the relay, an ICE-lite agent, meets browsers. werift gets three things wrong for it, and offers
// no public way to change them, so this works on its private ICE connection (as `udpSockets` in
// ./link.ts does on its sockets; test/relay/ice-lite.test.ts fails the day an upgrade moves them):
// - it writes `a=ice-lite` into every media section, where browsers do not read it;
// - it answers, and acts on, any binding request: it verifies MESSAGE-INTEGRITY on responses only;
// - it takes a pair only once nominated, a check interval after the browser could have started DTLS;
// - it hands any datagram that is not STUN, from any address, to DTLS and SRTP;
// - it drops a ClientHello that comes before its DTLS server starts.
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
  for (const dtls of pc.dtlsTransports) {
    const connection = dtls.iceTransport.connection as unknown as IceConnection;
    for (const protocol of connection.protocols) {
      if (guarded.has(protocol)) continue;
      guarded.add(protocol);
      authenticate(connection, protocol);
      fromPairsOnly(connection, protocol, dtls);
    }
    if (connection.iceLite) selectOnFirstCheck(connection);
  }
}

/** DTLS records held for a connection whose DTLS has not started: at most this many. */
const MAX_EARLY_DTLS = 4;
type DtlsTransport = RTCPeerConnection['dtlsTransports'][number];
const early = new WeakMap<DtlsTransport, (() => void)[]>();

/**
 * Holds a DTLS record that came before `dtls` started, and hands it on once it has: a browser checks
 * as soon as it has the server's candidates, which are in the offer, and may finish ICE and send its
 * ClientHello before the server has even applied its answer; werift, with no DTLS server yet, dropped
 * it, and the browser sent it again only after its retransmission timer (250 ms seen).
 */
function holdUntilStarted(dtls: DtlsTransport, deliver: () => void): void {
  let held = early.get(dtls);
  if (!held) {
    const queue: (() => void)[] = [];
    held = queue;
    early.set(dtls, queue);
    const { unSubscribe } = dtls.onStateChange.subscribe((state) => {
      if (state === 'new') return;
      unSubscribe();
      early.delete(dtls);
      // werift makes its DTLS server just after it says "connecting", in the same task.
      queueMicrotask(() => {
        for (const record of queue) record();
      });
    });
  }
  if (held.length < MAX_EARLY_DTLS) held.push(deliver);
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
    if (!authentic(connection, message, data)) return;
    const addresses = checkedFrom(connection);
    if (addresses.size < MAX_CHECKED_ADDRESSES) addresses.add(addressKey(addr));
    execute(message, addr, data);
  };
}

/**
 * The addresses that sent a connection an authentic check. werift makes a pair of one only once it
 * has the peer's answer, and a browser that has the server's candidates in the offer may check, and
 * start DTLS, before the server has applied it. Each needs the password, and a peer has a few
 * candidates: past `MAX_CHECKED_ADDRESSES` (a peer checking from port after port) no more are kept.
 */
const MAX_CHECKED_ADDRESSES = 16;
const checked = new WeakMap<IceConnection, Set<string>>();
function checkedFrom(connection: IceConnection): Set<string> {
  let addresses = checked.get(connection);
  if (!addresses) {
    addresses = new Set();
    checked.set(connection, addresses);
  }
  return addresses;
}
const addressKey = ([host, port]: Address) => `${host}|${port}`;

/**
 * DTLS and media are taken from the addresses of the connection's candidate pairs only: those the
 * peer's signalling named and those it checked from with the password (`checkedFrom`). werift took a
 * datagram from anywhere: a ClientHello from anyone who reached the port restarted the
 * DTLS handshake of a connected viewer, and every datagram cost its parsing. STUN goes on to
 * `authenticate`.
 */
function fromPairsOnly(connection: IceConnection, protocol: Protocol, dtls: DtlsTransport): void {
  const received = protocol.datagramReceived;
  if (!received) return;
  const paired = (addr: Address) =>
    connection.checkList.some(({ remoteAddr }) => remoteAddr[1] === addr[1] && remoteAddr[0] === addr[0]) || (checked.get(connection)?.has(addressKey(addr)) ?? false);
  protocol.datagramReceived = (data, addr) => {
    // A STUN message's first byte is 0 to 3, DTLS's 20 to 63, RTP's and RTCP's 128 to 191 (RFC 7983).
    const first = data[0] ?? 0;
    if (first < 4) return received.call(protocol, data, addr);
    if (!paired(addr)) return;
    if (first >= 64 || dtls.state !== 'new') received.call(protocol, data, addr);
    else holdUntilStarted(dtls, () => received.call(protocol, data, addr));
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
