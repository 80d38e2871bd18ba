// The relay's ICE as a browser meets it: the offer says "ICE lite" where browsers read it (the session
// level), and the server takes the first pair the browser proves with an authenticated check, without
// waiting for the nominating check that a browser sends only a check interval later. The peer here is a
// UDP socket speaking STUN by hand, so that each check is exactly the one a browser sends.
import { afterEach, describe, expect, test } from 'bun:test';
import { createSocket, type Socket } from 'node:dgram';
import { DtlsClient, Message, parseMessage, RTCDtlsTransport } from 'werift';
import { type Clock, systemClock } from '../../src/clock';
import { defaultConfig } from '../../src/config';
import { iceLiteAtSessionLevel } from '../../src/relay/ice-lite';
import { OFFER_GATHER_MS, ServerLink, udpSockets } from '../../src/relay/link';
import { viewerConfig } from '../../src/relay/settings';
import { ManualClock, until } from '../helpers';

const PEER_UFRAG = 'peerufrag';
const PEER_PWD = 'peer-password-of-22-chars';

describe('the ice-lite attribute of the relay offer', () => {
  test('a media-level a=ice-lite becomes one line before the first media section', () => {
    const sdp = 'v=0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-lite\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-lite\r\na=mid:1\r\n';
    expect(iceLiteAtSessionLevel(sdp)).toBe('v=0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n');
  });

  test('an offer of a full agent is left as it is', () => {
    const sdp = 'v=0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n';
    expect(iceLiteAtSessionLevel(sdp)).toBe(sdp);
  });
});

describe('a relay connection meeting a browser-like peer', () => {
  const opened: { link: ServerLink; sockets: Socket[] }[] = [];
  afterEach(() => {
    for (const { link, sockets } of opened.splice(0)) {
      link.close();
      for (const socket of sockets) socket.close();
    }
  });

  /** A viewer's connection that offers (and what it sent), with the relay's settings and `hostIps`. */
  function offering(hostIps?: string[], publicIp?: string, relayIceUrls?: string[], clock: Clock = systemClock) {
    const sent: { type: string; payload: { sdp?: string; candidate?: string } }[] = [];
    const config = viewerConfig({ ...defaultConfig(), relayHostIps: hostIps, relayIceUrls });
    const link = new ServerLink('v1', config, { send: (type, payload) => sent.push({ type, payload: payload as never }), clock, log: () => {}, publicIp });
    opened.push({ link, sockets: [] });
    link.pc.addTransceiver('video', { direction: 'sendonly' });
    link.offer();
    return { link, sent };
  }

  /** A browser's answer to the server's offer: its own credentials, the DTLS client, receiving. */
  const answerTo = (offer: string) =>
    offer
      .replace(/^a=ice-lite\r\n/gm, '')
      .replace(/^a=ice-ufrag:.*$/gm, `a=ice-ufrag:${PEER_UFRAG}`)
      .replace(/^a=ice-pwd:.*$/gm, `a=ice-pwd:${PEER_PWD}`)
      .replace(/^a=setup:actpass/gm, 'a=setup:active')
      .replace(/^a=sendonly/gm, 'a=recvonly');

  /** The first ClientHello of a werift DTLS client, as bytes (the client is stopped at once). */
  async function clientHello(): Promise<Buffer> {
    const certificate = await RTCDtlsTransport.SetupCertificate();
    let hello: Buffer | undefined;
    const transport = { type: 'udp', address: {}, send: (data: Buffer) => void (hello ??= Buffer.from(data)), onData: () => {}, close: () => {} };
    const client = new DtlsClient({
      cert: certificate.certPem,
      key: certificate.privateKey,
      signatureHash: certificate.signatureHash,
      transport: transport as never,
      srtpProfiles: [1],
      extendedMasterSecret: true,
    });
    client.connect().catch(() => undefined);
    await until(() => hello !== undefined, 'a ClientHello', 2000);
    client.close();
    return hello as Buffer;
  }

  /** The offer's `a=candidate` lines, split into their fields. */
  const offeredCandidates = (sdp: string) => [...sdp.matchAll(/^a=candidate:(.*?)\r?$/gm)].map((m) => (m[1] ?? '').split(' '));

  /**
   * A viewer's connection that has offered, taken the peer's answer, and waits for checks; `server` is its
   * first host candidate, `candidates` the first `candidateCount`.
   */
  async function answeredLink(hostIps?: string[], candidateCount = 1) {
    const { link, sent } = offering(hostIps);
    const entry = opened.at(-1) as (typeof opened)[number];
    const offered = () => sent.find((m) => m.type === 'offer')?.payload.sdp;
    // In the offer, or trickled after it.
    const candidates = () =>
      [...offeredCandidates(offered() ?? ''), ...sent.flatMap((m) => (m.type === 'ice-candidate' && m.payload.candidate ? [m.payload.candidate.split(' ')] : []))].map((parts) => ({
        address: parts[4] ?? '',
        port: Number(parts[5]),
      }));
    await until(() => candidates().length >= candidateCount, 'the server candidates', 4000);
    const offer = offered() ?? '';
    const ufrag = /^a=ice-ufrag:(\S+)/m.exec(offer)?.[1] ?? '';
    const pwd = /^a=ice-pwd:(\S+)/m.exec(offer)?.[1] ?? '';
    link.handle({ type: 'answer', sdp: answerTo(offer) });
    await until(() => link.pc.iceConnectionState === 'checking', 'ICE checking', 4000);
    const [server] = candidates() as [Candidate];
    return { link, offer, server, candidates: candidates(), ufrag, pwd, sockets: entry.sockets };
  }

  /** How long a check waits for an answer before it counts as dropped. */
  const UNANSWERED_MS = 300;

  interface Candidate {
    address: string;
    port: number;
  }
  interface Checked {
    /** Whether the server answered with a success; undefined when it did not answer. */
    ok: boolean | undefined;
    /** The port of the checking socket (on 127.0.0.1). */
    from: number;
    /** Where the server's answer came from. */
    answeredFrom?: Candidate;
  }

  /**
   * A check from a new socket on 127.0.0.1, as the controlling side (a browser answering a lite offer);
   * resolves with the server's answer, or `ok: undefined` when none came.
   */
  async function check(target: Candidate, ufrag: string, pwd: string, sockets: Socket[], nominate: boolean): Promise<Checked> {
    const socket = createSocket('udp4');
    sockets.push(socket);
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const from = socket.address().port;
    const request = new Message(1, 0);
    request.setAttribute('USERNAME', `${ufrag}:${PEER_UFRAG}`).setAttribute('PRIORITY', 1_845_501_695).setAttribute('ICE-CONTROLLING', 0x1234_5678_9abc_def0n);
    if (nominate) request.setAttribute('USE-CANDIDATE', null);
    request.addMessageIntegrity(Buffer.from(pwd, 'utf8')).addFingerprint();
    const answered = new Promise<Checked>((resolve) => {
      const timer = setTimeout(() => resolve({ ok: undefined, from }), UNANSWERED_MS);
      socket.once('message', (data, source) => {
        clearTimeout(timer);
        resolve({ ok: parseMessage(data)?.messageClass === 256, from, answeredFrom: { address: source.address, port: source.port } });
      });
    });
    socket.send(request.bytes, target.port, target.address);
    return answered;
  }

  test('the offer says a=ice-lite once, at the session level, as browsers read it', async () => {
    const { offer } = await answeredLink();
    expect(offer.match(/^a=ice-lite\r$/gm)?.length).toBe(1);
    expect(offer.indexOf('a=ice-lite')).toBeLessThan(offer.indexOf('\nm='));
  });

  test('the offer carries the host candidates: nothing trickles after it, and a peer that reads no candidate events can check them', async () => {
    const { sent } = offering(['127.0.0.2']);
    await until(() => sent.some((m) => m.type === 'offer'), 'the offer', 4000);
    const offer = sent.find((m) => m.type === 'offer')?.payload.sdp ?? '';
    const lines = offeredCandidates(offer);
    // 127.0.0.2 and the default interface's address, each a UDP host candidate.
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.map((fields) => fields[4])).toContain('127.0.0.2');
    for (const fields of lines) expect([fields[2]?.toLowerCase(), fields[7]]).toEqual(['udp', 'host']);
    // Gathering is over once the offer is out: the same candidates are not sent again as events.
    expect(sent.filter((m) => m.type === 'ice-candidate')).toEqual([]);
    const { candidates, ufrag, pwd, sockets } = await answeredLink(['127.0.0.2'], 2);
    for (const candidate of candidates) expect((await check(candidate, ufrag, pwd, sockets, false)).ok).toBe(true);
  });

  test("with RELAY_PUBLIC_IP the offer's candidates name the public address", async () => {
    const { sent } = offering(undefined, '203.0.113.7');
    await until(() => sent.some((m) => m.type === 'offer'), 'the offer', 4000);
    const lines = offeredCandidates(sent.find((m) => m.type === 'offer')?.payload.sdp ?? '');
    expect(lines.length).toBeGreaterThan(0);
    for (const fields of lines) expect(fields[4]).toBe('203.0.113.7');
  });

  test('with a STUN server (RELAY_ICE_URLS) the offer waits for it no longer than OFFER_GATHER_MS: what it finds later trickles', async () => {
    // A STUN server that holds each Binding request until told to answer it.
    const stun = createSocket('udp4');
    const requests: { data: Buffer; port: number; address: string }[] = [];
    stun.on('message', (data, from) => requests.push({ data, port: from.port, address: from.address }));
    await new Promise<void>((resolve) => stun.bind(0, '127.0.0.1', resolve));
    const clock = new ManualClock();
    const { sent } = offering(undefined, undefined, [`stun:127.0.0.1:${stun.address().port}`], clock);
    opened[opened.length - 1]?.sockets.push(stun);
    // werift asks the STUN server from its host candidates' sockets, once it has them.
    await until(() => requests.length > 0, 'a Binding request', 4000);
    expect(sent).toEqual([]);
    clock.advance(OFFER_GATHER_MS);
    await until(() => sent.some((m) => m.type === 'offer'), 'the offer', 4000);
    const offer = sent.find((m) => m.type === 'offer')?.payload.sdp ?? '';
    expect(offeredCandidates(offer).map((fields) => fields[7])).toContain('host');
    expect(offer).not.toContain('srflx');
    for (const { data, port, address } of requests) {
      const request = parseMessage(data);
      if (!request) continue;
      const response = new Message(1, 256, request.transactionId);
      response.setAttribute('XOR-MAPPED-ADDRESS', ['203.0.113.9', 40_000]).addFingerprint();
      stun.send(response.bytes, port, address);
    }
    await until(() => sent.some((m) => m.payload.candidate?.includes(' typ srflx')), 'the reflexive candidate, trickled', 4000);
    const srflx = sent.find((m) => m.payload.candidate?.includes(' typ srflx'))?.payload.candidate ?? '';
    expect(srflx.split(' ').slice(4, 6)).toEqual(['203.0.113.9', '40000']);
    // The host candidates went in the offer only.
    expect(sent.filter((m) => m.type === 'ice-candidate').map((m) => m.payload.candidate?.split(' ')[7])).toEqual(['srflx']);
  });

  test('the first authenticated check of the controlling peer connects, with no USE-CANDIDATE yet', async () => {
    const { link, server, ufrag, pwd, sockets } = await answeredLink();
    expect(await check(server, ufrag, pwd, sockets, false)).toMatchObject({ ok: true });
    await until(() => link.pc.iceConnectionState === 'connected', 'ICE connected on the first check', 2000);
  });

  test('a check with the wrong password, or for another ufrag, is dropped unanswered and connects nothing', async () => {
    const { link, server, ufrag, pwd, sockets } = await answeredLink();
    expect((await check(server, ufrag, 'not-the-password-at-all', sockets, true)).ok).toBeUndefined();
    expect((await check(server, 'zzzz', pwd, sockets, true)).ok).toBeUndefined();
    expect(link.pc.iceConnectionState).toBe('checking');
  });

  test('a check is answered from the address and port it was sent to, on every candidate', async () => {
    // 127.0.0.2 is this machine's (all of 127/8 is), but a reply to 127.0.0.1 from a socket bound to every
    // address would leave from 127.0.0.1, and the machine's other addresses' likewise: a browser drops a
    // response from any address but the one it checked, and the pair fails.
    const { candidates, ufrag, pwd, sockets } = await answeredLink(['127.0.0.2'], 2);
    expect(candidates.map((c) => c.address)).toContain('127.0.0.2');
    for (const candidate of candidates) {
      const checked = await check(candidate, ufrag, pwd, sockets, false);
      expect(checked).toMatchObject({ ok: true, answeredFrom: candidate });
    }
  });

  test('a ClientHello that comes before the server has applied the answer is answered, with flight 4 at once, once its DTLS starts', async () => {
    // A browser has the server's candidates in the offer: it may check, connect and start DTLS while
    // its answer is still on the way to the server.
    const { link, sent } = offering();
    await until(() => sent.some((m) => m.type === 'offer'), 'the offer', 4000);
    const offer = sent.find((m) => m.type === 'offer')?.payload.sdp ?? '';
    const [fields] = offeredCandidates(offer);
    const server = { address: fields?.[4] ?? '', port: Number(fields?.[5]) };
    const ufrag = /^a=ice-ufrag:(\S+)/m.exec(offer)?.[1] ?? '';
    const pwd = /^a=ice-pwd:(\S+)/m.exec(offer)?.[1] ?? '';
    const sockets = opened.at(-1)?.sockets ?? [];
    expect((await check(server, ufrag, pwd, sockets, false)).ok).toBe(true);
    const socket = sockets.at(-1) as Socket;
    const records: Buffer[] = [];
    socket.on('message', (data) => records.push(data));
    // The server's socket has read it (its listeners run after werift's), and then the answer comes:
    // the server's DTLS starts only now.
    const serverSocket = udpSockets(link.pc).find((s) => s.address().port === server.port);
    const read = new Promise((resolve) => serverSocket?.once('message', resolve));
    socket.send(await clientHello(), server.port, server.address);
    await read;
    expect(link.pc.dtlsTransports[0]?.state).toBe('new');
    link.handle({ type: 'answer', sdp: answerTo(offer) });
    // Its ServerHello (handshake type 2), to the one ClientHello: no HelloVerifyRequest (type 3) first,
    // the check proved the address.
    await until(() => records.some((r) => r[0] === 22 && r[13] === 2), 'the ServerHello', 2000);
    expect(records.some((r) => r[0] === 22 && r[13] === 3)).toBe(false);
  });

  test('DTLS and media are taken from a checked address only, not from anyone who reaches the port', async () => {
    const { link, server, ufrag, pwd, sockets } = await answeredLink();
    const connection = link.pc.iceTransports[0]?.connection as unknown as { onData: { subscribe(f: (data: Buffer) => void): void } };
    const taken: number[] = [];
    connection.onData.subscribe((data) => taken.push(data[0] ?? 0));
    expect((await check(server, ufrag, pwd, sockets, false)).ok).toBe(true);
    const checked = sockets.at(-1) as Socket;
    const stranger = createSocket('udp4');
    sockets.push(stranger);
    await new Promise<void>((resolve) => stranger.bind(0, '127.0.0.1', resolve));
    // A DTLS handshake record (a ClientHello would restart a connected viewer's handshake) and an RTP packet.
    const datagrams = [Buffer.from([22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2])];
    const send = (socket: Socket, datagram: Buffer) => new Promise<void>((resolve) => socket.send(datagram, server.port, server.address, () => resolve()));
    // The stranger's are sent, and so queued at the server's socket, before the checked peer's.
    for (const datagram of datagrams) await send(stranger, datagram);
    for (const datagram of datagrams) await send(checked, datagram);
    await until(() => taken.length >= 2, "the checked address's datagrams", 2000);
    expect(taken).toEqual([22, 0x80]);
  });

  test("the server's DTLS answers go to the pair a check selected, never to where a ClientHello came from: no certificate to an address nobody proved", async () => {
    const { link, server, ufrag, pwd, sockets } = await answeredLink();
    expect((await check(server, ufrag, pwd, sockets, false)).ok).toBe(true);
    const selected = sockets.at(-1) as Socket;
    await until(() => link.pc.dtlsTransports[0]?.state === 'connecting', 'DTLS started', 2000);
    // Another address, one the peer's signalling named (anyone's, as far as the server knows).
    const named = createSocket('udp4');
    sockets.push(named);
    await new Promise<void>((resolve) => named.bind(0, '127.0.0.1', resolve));
    const port = named.address().port;
    link.handle({ type: 'ice-candidate', candidate: { candidate: `candidate:1 1 udp 2122260223 127.0.0.1 ${port} typ host`, sdpMid: '0', sdpMLineIndex: 0 } });
    const connection = link.pc.iceTransports[0]?.connection as unknown as { checkList: { remoteAddr: [string, number] }[] };
    await until(() => connection.checkList.some((pair) => pair.remoteAddr[1] === port), 'the named pair', 2000);
    const toNamed: Buffer[] = [];
    const toSelected: Buffer[] = [];
    named.on('message', (data) => toNamed.push(data));
    selected.on('message', (data) => toSelected.push(data));
    named.send(await clientHello(), server.port, server.address);
    await until(() => toSelected.some((r) => r[0] === 22 && r[13] === 2), 'the ServerHello, on the selected pair', 2000);
    await Bun.sleep(100);
    expect(toNamed).toEqual([]);
  });

  test('a later nomination of another pair is followed', async () => {
    const { link, server, ufrag, pwd, sockets } = await answeredLink();
    const first = await check(server, ufrag, pwd, sockets, false);
    await until(() => link.pc.iceConnectionState === 'connected', 'ICE connected', 2000);
    const connection = () => link.pc.iceTransports[0]?.connection as unknown as { nominated?: { remoteAddr: [string, number] } } | undefined;
    const selected = () => connection()?.nominated?.remoteAddr[1];
    expect(selected()).toBe(first.from);
    const nominated = await check(server, ufrag, pwd, sockets, true);
    expect(nominated.ok).toBe(true);
    await until(() => selected() === nominated.from, 'the nominated pair selected', 2000);
    // Someone without the password cannot move the media to an address of theirs.
    expect((await check(server, ufrag, 'not-the-password-at-all', sockets, true)).ok).toBeUndefined();
    expect(selected()).toBe(nominated.from);
  });
});
