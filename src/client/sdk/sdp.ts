// What an offer says about the connection it belongs to, for a peer that answers the server's offers:
// the browser client, the device simulator and the benchmark's peers.

/** The DTLS certificate fingerprint an SDP names (`a=fingerprint:`, session or first media level). */
export function dtlsFingerprint(sdp: string): string | undefined {
  return /^a=fingerprint:(.+)$/m.exec(sdp)?.[1]?.trim().toLowerCase();
}

/**
 * Whether an offer is for a new connection rather than a renegotiation of `current`: its DTLS certificate
 * is another. The server sends one when the instance carrying a relay session's media changes (another
 * process, another certificate): the answer goes on a new connection, as neither werift nor Chromium
 * makes a working new DTLS association on the old one.
 */
export function isNewConnection(current: string | undefined, offer: string): boolean {
  if (current === undefined) return false;
  const [was, now] = [dtlsFingerprint(current), dtlsFingerprint(offer)];
  return was !== undefined && now !== undefined && was !== now;
}
