// The relay's DTLS key exchange. werift makes its X25519 keys and secret with tweetnacl's JavaScript
// (about 1.3 ms a scalar multiplication, twice per handshake on each side) and its P-256 ones with
// noble's (1.7 ms a secret); the patch in patches/ makes them with the runtime's crypto. These
// handshakes run with those JavaScript implementations disabled, so that a werift that went back to
// them fails here.
import { afterEach, describe, expect, test } from 'bun:test';
import { p256 } from '@noble/curves/p256';
import nacl from 'tweetnacl';
import { NamedCurveAlgorithmList, RTCDtlsTransport, RTCPeerConnection } from 'werift';

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
