// The relay's DTLS key exchange. werift makes its X25519 keys and secret with tweetnacl's JavaScript
// (about 1.3 ms a scalar multiplication, twice per handshake on each side); the patch in patches/
// makes them with the runtime's crypto. These handshakes run with tweetnacl's X25519 disabled, so that
// a werift that went back to it fails here.
import { afterEach, describe, expect, test } from 'bun:test';
import nacl from 'tweetnacl';
import { RTCDtlsTransport, RTCPeerConnection } from 'werift';

type KeyPair = { privateKey: Uint8Array; publicKey: Uint8Array; curve: number };
/** The key exchange of a connection's DTLS session, once it is connected. */
const cipherOf = (pc: RTCPeerConnection) => (pc.dtlsTransports[0] as unknown as { dtls: { cipher: { localKeyPair: KeyPair } } }).dtls.cipher;

const X25519 = 29;

describe('DTLS key exchange', () => {
  const originals = { scalarMult: nacl.scalarMult, keyPair: nacl.box.keyPair };
  const opened: RTCPeerConnection[] = [];
  afterEach(async () => {
    Object.assign(nacl, { scalarMult: originals.scalarMult });
    Object.assign(nacl.box, { keyPair: originals.keyPair });
    await Promise.all(opened.splice(0).map((pc) => pc.close()));
  });

  test('two werift connections agree on X25519 and connect without tweetnacl; the keys are X25519 keys tweetnacl agrees with', async () => {
    await RTCDtlsTransport.SetupCertificate();
    const refused = () => {
      throw new Error('tweetnacl X25519 was called');
    };
    Object.assign(nacl, { scalarMult: Object.assign(refused, { base: refused }) });
    Object.assign(nacl.box, { keyPair: refused });
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
});
