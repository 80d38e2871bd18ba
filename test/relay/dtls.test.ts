// The relay's DTLS, as patched (patches/werift@*.patch). The key exchange: werift makes its X25519 keys
// and secret with tweetnacl's JavaScript (about 1.3 ms a scalar multiplication, twice per handshake on
// each side) and its P-256 ones with noble's (1.7 ms a secret); the patch makes them with the runtime's
// crypto, and these handshakes run with those JavaScript implementations disabled, so that a werift
// that went back to them fails here. The client's start: werift waited 100 ms before its ClientHello
// (the relay is the DTLS client of every WHIP and WHEP peer, which offer `actpass`); it now sends it at
// once, again 50 ms later if no answer came, and takes a second answer to the two for what it is. The
// peer's signatures: werift matched the peer's certificate with the signalling's fingerprint but never
// checked that the peer signed with its key, nor the peer's Finished; either wrong now fails the handshake.
import { afterEach, describe, expect, test } from 'bun:test';
import { p256 } from '@noble/curves/p256';
import nacl from 'tweetnacl';
import {
  CipherContext,
  HashAlgorithm,
  NamedCurveAlgorithm,
  NamedCurveAlgorithmList,
  RTCCertificate,
  RTCDtlsFingerprint,
  RTCDtlsParameters,
  RTCDtlsTransport,
  RTCPeerConnection,
  SignatureAlgorithm,
} from 'werift';

type KeyPair = { privateKey: Uint8Array; publicKey: Uint8Array; curve: number };
/** The key exchange of a connection's DTLS session, once it is connected. */
const cipherOf = (pc: RTCPeerConnection) => (pc.dtlsTransports[0] as unknown as { dtls: { cipher: { localKeyPair: KeyPair } } }).dtls.cipher;

const X25519 = 29;
const P256 = 23;

/** Two werift connections, offer and answer exchanged, once both are connected. */
async function connectedPair(opened: RTCPeerConnection[]): Promise<[RTCPeerConnection, RTCPeerConnection]> {
  await RTCDtlsTransport.SetupCertificate();
  const a = new RTCPeerConnection({ iceUseIpv4: true, iceUseIpv6: false });
  const b = new RTCPeerConnection({ iceUseIpv4: true, iceUseIpv6: false });
  opened.push(a, b);
  a.addTransceiver('video', { direction: 'sendonly' });
  a.onIceCandidate.subscribe((c) => c && b.addIceCandidate(c));
  b.onIceCandidate.subscribe((c) => c && a.addIceCandidate(c));
  const connected = (pc: RTCPeerConnection) => new Promise<void>((resolve) => pc.connectionStateChange.subscribe((state) => state === 'connected' && resolve()));
  const both = Promise.all([connected(a), connected(b)]);
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription!);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription!);
  await both;
  return [a, b];
}

const refused = () => {
  throw new Error('a JavaScript key exchange was called');
};

describe('DTLS key exchange', () => {
  const originals = { scalarMult: nacl.scalarMult, keyPair: nacl.box.keyPair, getSharedSecret: p256.getSharedSecret, getPublicKey: p256.getPublicKey };
  const curves = [...NamedCurveAlgorithmList];
  const opened: RTCPeerConnection[] = [];
  afterEach(async () => {
    Object.assign(nacl, { scalarMult: originals.scalarMult });
    Object.assign(nacl.box, { keyPair: originals.keyPair });
    Object.assign(p256, { getSharedSecret: originals.getSharedSecret, getPublicKey: originals.getPublicKey });
    NamedCurveAlgorithmList.splice(0, NamedCurveAlgorithmList.length, ...curves);
    await Promise.all(opened.splice(0).map((pc) => pc.close()));
  });

  test('two werift connections agree on X25519 and connect without tweetnacl; the keys are X25519 keys tweetnacl agrees with', async () => {
    Object.assign(nacl, { scalarMult: Object.assign(refused, { base: refused }) });
    Object.assign(nacl.box, { keyPair: refused });
    const [a, b] = await connectedPair(opened);

    const [ka, kb] = [cipherOf(a), cipherOf(b)];
    expect([ka.localKeyPair.curve, kb.localKeyPair.curve]).toEqual([X25519, X25519]);
    Object.assign(nacl, { scalarMult: originals.scalarMult });
    const { privateKey: pa, publicKey: qa } = ka.localKeyPair;
    const { privateKey: pb, publicKey: qb } = kb.localKeyPair;
    expect([pa.length, qa.length, pb.length, qb.length]).toEqual([32, 32, 32, 32]);
    // Each public key is its private key's, and both sides' secrets are the same one, as tweetnacl computes them.
    expect(Buffer.from(nacl.scalarMult.base(pa))).toEqual(Buffer.from(qa));
    expect(Buffer.from(nacl.scalarMult.base(pb))).toEqual(Buffer.from(qb));
    expect(Buffer.from(nacl.scalarMult(pa, qb))).toEqual(Buffer.from(nacl.scalarMult(pb, qa)));
  });

  test('with P-256 alone (a peer without X25519) they connect without noble; the keys are P-256 keys noble agrees with', async () => {
    // Both sides offer and accept what this list holds: P-256 only, as some embedded DTLS stacks do.
    NamedCurveAlgorithmList.splice(0, NamedCurveAlgorithmList.length, P256);
    Object.assign(p256, { getSharedSecret: refused, getPublicKey: refused });
    const [a, b] = await connectedPair(opened);
    const [ka, kb] = [cipherOf(a), cipherOf(b)];
    expect([ka.localKeyPair.curve, kb.localKeyPair.curve]).toEqual([P256, P256]);
    Object.assign(p256, { getSharedSecret: originals.getSharedSecret, getPublicKey: originals.getPublicKey });
    const { privateKey: pa, publicKey: qa } = ka.localKeyPair;
    const { privateKey: pb, publicKey: qb } = kb.localKeyPair;
    expect([pa.length, qa.length, pb.length, qb.length]).toEqual([32, 65, 32, 65]);
    expect(Buffer.from(p256.getPublicKey(pa, false))).toEqual(Buffer.from(qa));
    expect(Buffer.from(p256.getPublicKey(pb, false))).toEqual(Buffer.from(qb));
    expect(Buffer.from(p256.getSharedSecret(pa, qb))).toEqual(Buffer.from(p256.getSharedSecret(pb, qa)));
  });
});

/** A DTLS handshake record's message type (ClientHello 1, HelloVerifyRequest 3), or undefined. */
const handshakeType = (record: Buffer) => (record[0] === 22 && record.length > 13 ? record[13] : undefined);
const CLIENT_HELLO = 1;
const HELLO_VERIFY_REQUEST = 3;
const SERVER_HELLO = 2;

interface PathOptions {
  /** May change a datagram on its way (someone on the path). */
  tamper?: (data: Buffer) => Buffer;
  /** The client's datagrams are held back, in order, until this is true of what it has sent. */
  holdToServerUntil?: (sent: readonly Sent[]) => boolean;
}
interface Sent {
  /** Milliseconds after the path was made. */
  at: number;
  type: number | undefined;
}

/**
 * Two ends of a datagram path, in place of two ICE connections: what one end sends reaches the other's
 * subscribers a millisecond later, and is lost while nobody there listens (a DTLS transport
 * subscribes when it starts).
 */
function datagramPath({ tamper = (data) => data, holdToServerUntil }: PathOptions = {}) {
  const end = () => {
    const subscribers: ((data: Buffer) => void)[] = [];
    return { subscribers, sent: [] as Sent[], onData: { subscribe: (f: (data: Buffer) => void) => subscribers.push(f) } };
  };
  const client = end();
  const server = end();
  const started = performance.now();
  const deliver = (to: typeof client, data: Buffer) =>
    setTimeout(() => {
      for (const subscriber of to.subscribers) subscriber(data);
    }, 1);
  const held: Buffer[] = [];
  const link = (from: typeof client, to: typeof client) => ({
    onData: from.onData,
    send: async (data: Buffer) => {
      from.sent.push({ at: performance.now() - started, type: handshakeType(data) });
      const delivered = tamper(Buffer.from(data));
      if (from !== client || !holdToServerUntil) return void deliver(to, delivered);
      held.push(delivered);
      if (!holdToServerUntil(client.sent)) return;
      for (const datagram of held.splice(0)) deliver(to, datagram);
      holdToServerUntil = undefined;
    },
    close() {},
  });
  return {
    client,
    server,
    clientIce: link(client, server),
    serverIce: link(server, client),
    /** Milliseconds since the path was made: the clock of `sent`. */
    elapsed: () => performance.now() - started,
  };
}

/** An RSA certificate, as GStreamer's webrtcbin makes (werift's and browsers' are ECDSA). */
async function rsaCertificate(): Promise<RTCCertificate> {
  const { certPem, keyPem, signatureHash } = await CipherContext.createSelfSignedCertificateWithKey(
    { signature: SignatureAlgorithm.rsa_1, hash: HashAlgorithm.sha256_4 },
    NamedCurveAlgorithm.x25519_29,
  );
  return new RTCCertificate(keyPem, certPem, signatureHash);
}

/** A DTLS transport of `role` over `ice`, trusting the one certificate both ends use; `config` is werift's PeerConfig. */
async function dtlsEnd(role: 'client' | 'server', ice: unknown, given?: RTCCertificate, config: object = {}): Promise<RTCDtlsTransport> {
  const certificate = given ?? (await RTCDtlsTransport.SetupCertificate());
  const transport = new RTCDtlsTransport(config as never, { connection: ice, role: role === 'server' ? 'controlling' : 'controlled' } as never, certificate, []);
  transport.role = role;
  transport.setRemoteParams(
    new RTCDtlsParameters(
      certificate.getFingerprints().map((f) => new RTCDtlsFingerprint(f.algorithm, f.value)),
      role === 'client' ? 'server' : 'client',
    ),
  );
  return transport;
}

/**
 * The datagram with the last byte of each handshake message of `type` changed (inside its signature,
 * which ends the message): for the plaintext records of the handshake's first flights.
 */
function withSignatureAltered(type: number) {
  return (data: Buffer): Buffer => {
    for (let at = 0; at + 13 <= data.length; ) {
      const end = at + 13 + data.readUInt16BE(at + 11);
      if (data[at] === 22 && data[at + 3] === 0 && data[at + 4] === 0 && data[at + 13] === type) data[end - 1] = (data[end - 1] ?? 0) ^ 0x01;
      at = end;
    }
    return data;
  };
}
const SERVER_KEY_EXCHANGE = 12;
const CERTIFICATE_VERIFY = 15;

/** The DTLS transports a test made, stopped after it. */
const started: RTCDtlsTransport[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((t) => t.stop().catch(() => undefined)));
});

/** A client and a server over `path`; `certificate` is both ends' (werift's ECDSA one by default), `serverConfig` the server's PeerConfig. */
async function ends(path: ReturnType<typeof datagramPath>, certificate?: RTCCertificate, serverConfig?: object) {
  const client = await dtlsEnd('client', path.clientIce, certificate);
  const server = await dtlsEnd('server', path.serverIce, certificate, serverConfig);
  started.push(client, server);
  return { client, server };
}

describe('DTLS peer authentication', () => {
  /**
   * A handshake in which the signature of every `type` message is altered on the way: what `checker`
   * (the end that verifies it) made of it, 'connected' or its error, and its state after.
   */
  async function withAltered(type: number, checker: 'client' | 'server', certificate?: RTCCertificate) {
    const transports = await ends(datagramPath({ tamper: withSignatureAltered(type) }), certificate);
    const checking = transports[checker];
    void transports[checker === 'client' ? 'server' : 'client'].start().catch(() => undefined);
    return { outcome: await outcomeOf(checking), state: checking.state };
  }

  /** Starts `transport`: 'connected', or the error its handshake failed with. */
  const outcomeOf = (transport: RTCDtlsTransport) =>
    transport.start().then(
      () => 'connected',
      (error: unknown) => String(error),
    );

  // Someone on the path who has seen the peer's certificate (it is sent in the clear) presents it, and
  // cannot sign with its key: here, the peer's own signature altered in transit stands for theirs.
  test("the server refuses a client whose CertificateVerify does not verify with the client's certificate", async () => {
    const { outcome, state } = await withAltered(CERTIFICATE_VERIFY, 'server');
    expect(outcome).toContain('does not verify');
    expect(state).toBe('failed');
  });

  test("the client refuses a server whose ServerKeyExchange does not verify with the server's certificate", async () => {
    const { outcome, state } = await withAltered(SERVER_KEY_EXCHANGE, 'client');
    expect(outcome).toContain('does not verify');
    expect(state).toBe('failed');
  });

  test("a Finished that does not match the handshake fails it, the client's or the server's", async () => {
    for (const [wrong, checker] of [
      ['client', 'server'],
      ['server', 'client'],
    ] as const) {
      const transports = await ends(datagramPath());
      void transports[wrong].start().catch(() => undefined);
      // Its Finished made over another handshake than the one both saw (its DTLS session exists once started).
      (transports[wrong] as unknown as { dtls: { cipher: { verifyData(): Buffer } } }).dtls.cipher.verifyData = () => Buffer.alloc(12);
      expect(await outcomeOf(transports[checker])).toContain('Finished does not match');
    }
  });

  test('RSA certificates: a handshake connects, and an altered signature fails it', async () => {
    const certificate = await rsaCertificate();
    const { client, server } = await ends(datagramPath(), certificate);
    await Promise.all([client.start(), server.start()]);
    expect([client.state, server.state]).toEqual(['connected', 'connected']);
    expect((await withAltered(CERTIFICATE_VERIFY, 'server', certificate)).outcome).toContain('does not verify');
  });
});

describe('DTLS server without the cookie exchange (the relay: dtls.helloVerify false)', () => {
  test('flight 4 answers the first ClientHello: one ClientHello, no HelloVerifyRequest, and both ends connect', async () => {
    const path = datagramPath();
    const { client, server } = await ends(path, undefined, { dtls: { helloVerify: false } });
    await Promise.all([client.start(), server.start()]);
    expect([client.state, server.state]).toEqual(['connected', 'connected']);
    expect(path.client.sent.filter((s) => s.type === CLIENT_HELLO)).toHaveLength(1);
    expect(path.server.sent.filter((s) => s.type === HELLO_VERIFY_REQUEST)).toEqual([]);
    expect(path.server.sent[0]?.type).toBe(SERVER_HELLO);
  });

  test('a ClientHello sent again (its answer lost or slow) gets the same flight 4, and the handshake completes', async () => {
    // Both ClientHellos reach the server before its answer reaches the client.
    const path = datagramPath({ holdToServerUntil: (sent) => sent.filter((s) => s.type === CLIENT_HELLO).length >= 2 });
    const { client, server } = await ends(path, undefined, { dtls: { helloVerify: false } });
    await Promise.all([client.start(), server.start()]);
    expect([client.state, server.state]).toEqual(['connected', 'connected']);
    expect(path.server.sent.filter((s) => s.type === SERVER_HELLO).length).toBeGreaterThanOrEqual(2);
  });
});

describe('DTLS client start', () => {
  test('the ClientHello leaves as soon as the client starts, and again soon if the server was not listening yet', async () => {
    const path = datagramPath();
    const { client, server } = await ends(path);
    const clientDone = client.start();
    // The server starts a little later, as a peer whose ICE connected a moment after: the first
    // ClientHello, sent before it, finds nobody listening, and a retransmission gets the answer.
    await Bun.sleep(20);
    const serverStartedAt = path.elapsed();
    await Promise.all([clientDone, server.start()]);
    expect([client.state, server.state]).toEqual(['connected', 'connected']);
    const hellos = path.client.sent.filter((s) => s.type === CLIENT_HELLO);
    expect(hellos[0]?.at).toBeLessThan(serverStartedAt);
    expect(hellos.length).toBeGreaterThanOrEqual(2);
  });

  test('an answer to each of two ClientHellos (a path slower than the retransmission) does not fail the handshake', async () => {
    // The ClientHello and its retransmission both reach the server before its first answer reaches the
    // client (the path holds them until both are sent): it answers both, and the client, already
    // sending its second ClientHello (with the cookie), gets the second answer after it. werift took
    // that for a failed handshake.
    const path = datagramPath({ holdToServerUntil: (sent) => sent.filter((s) => s.type === CLIENT_HELLO).length >= 2 });
    const { client, server } = await ends(path);
    await Promise.all([client.start(), server.start()]);
    expect(path.server.sent.filter((s) => s.type === HELLO_VERIFY_REQUEST).length).toBeGreaterThanOrEqual(2);
    expect([client.state, server.state]).toEqual(['connected', 'connected']);
  });
});
