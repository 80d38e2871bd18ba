// Realistic signalling payloads for relay benchmarks: what a browser sends through a signalling server.
// An ICE candidate is about 200 bytes of JSON; an SDP offer for one audio and one video track, with the
// codecs a current Chrome offers, about 4 KB. Each payload object's text is returned without its opening
// brace, so that a benchmark can put a send-time stamp first (`{"t":…,` + rest) and find it cheaply.

/** The payload of an `ice-candidate` message: an RTCIceCandidateInit as `toJSON()` gives it, server-reflexive. */
export function iceCandidate(seed: number): Record<string, unknown> {
  const port = 40_000 + (seed % 20_000);
  return {
    candidate: `candidate:${1_000_000_000 + seed * 7919} 1 udp 1686052607 203.0.113.${seed % 250} ${port} typ srflx raddr 192.168.1.${seed % 250} rport ${port} generation 0 ufrag Xq3b`,
    sdpMid: '0',
    sdpMLineIndex: 0,
    usernameFragment: 'Xq3b',
  };
}

const FINGERPRINT = Array.from({ length: 32 }, (_, i) => ((i * 37 + 11) & 0xff).toString(16).toUpperCase().padStart(2, '0')).join(':');

const VIDEO_FEEDBACK = ['goog-remb', 'transport-cc', 'ccm fir', 'nack', 'nack pli'];

/** Video codecs as Chrome lists them: payload type, name, fmtp (or none), with an RTX stream for each. */
const VIDEO_CODECS: [number, string, string | undefined][] = [
  [96, 'VP8/90000', undefined],
  [98, 'VP9/90000', 'profile-id=0'],
  [100, 'VP9/90000', 'profile-id=2'],
  [102, 'H264/90000', 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f'],
  [104, 'H264/90000', 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f'],
  [106, 'H264/90000', 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f'],
  [108, 'H264/90000', 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f'],
  [45, 'AV1/90000', 'level-idx=5;profile=0;tier=0'],
];

/** The payload of an `offer` message: an RTCSessionDescriptionInit with audio and video, about 4 KB as JSON. */
export function sdpOffer(seed: number): Record<string, unknown> {
  const lines = [
    'v=0',
    `o=- ${4_611_731_400_430_051_336n + BigInt(seed)} 2 IN IP4 127.0.0.1`,
    's=-',
    't=0 0',
    'a=group:BUNDLE 0 1',
    'a=extmap-allow-mixed',
    'a=msid-semantic: WMS cam',
  ];
  const transport = (mid: number) => [
    'c=IN IP4 0.0.0.0',
    'a=rtcp:9 IN IP4 0.0.0.0',
    'a=ice-ufrag:Xq3b',
    'a=ice-pwd:bX9kq2Lr7TzPmV4sYd8nWc1H',
    'a=ice-options:trickle',
    `a=fingerprint:sha-256 ${FINGERPRINT}`,
    'a=setup:actpass',
    `a=mid:${mid}`,
  ];
  lines.push('m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 110 126', ...transport(0));
  lines.push(
    'a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level',
    'a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
    'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid',
    'a=sendrecv',
    'a=msid:cam audio0',
    'a=rtcp-mux',
    'a=rtpmap:111 opus/48000/2',
    'a=rtcp-fb:111 transport-cc',
    'a=fmtp:111 minptime=10;useinbandfec=1',
    'a=rtpmap:63 red/48000/2',
    'a=fmtp:63 111/111',
    'a=rtpmap:9 G722/8000',
    'a=rtpmap:0 PCMU/8000',
    'a=rtpmap:8 PCMA/8000',
    'a=rtpmap:110 telephone-event/48000',
    'a=rtpmap:126 telephone-event/8000',
    `a=ssrc:${1_000 + seed} cname:wR3nT8xQ`,
    `a=ssrc:${1_000 + seed} msid:cam audio0`,
  );
  const types = VIDEO_CODECS.flatMap(([pt]) => [pt, pt + 1]);
  lines.push(`m=video 9 UDP/TLS/RTP/SAVPF ${types.join(' ')}`, ...transport(1));
  lines.push(
    'a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time',
    'a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
    'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid',
    'a=extmap:13 urn:3gpp:video-orientation',
    'a=sendrecv',
    'a=msid:cam video0',
    'a=rtcp-mux',
    'a=rtcp-rsize',
  );
  for (const [pt, codec, fmtp] of VIDEO_CODECS) {
    lines.push(`a=rtpmap:${pt} ${codec}`, ...VIDEO_FEEDBACK.map((fb) => `a=rtcp-fb:${pt} ${fb}`));
    if (fmtp) lines.push(`a=fmtp:${pt} ${fmtp}`);
    lines.push(`a=rtpmap:${pt + 1} rtx/90000`, `a=fmtp:${pt + 1} apt=${pt}`);
  }
  const ssrc = 2_000 + seed * 2;
  lines.push(`a=ssrc-group:FID ${ssrc} ${ssrc + 1}`);
  for (const s of [ssrc, ssrc + 1]) lines.push(`a=ssrc:${s} cname:wR3nT8xQ`, `a=ssrc:${s} msid:cam video0`);
  return { type: 'offer', sdp: `${lines.join('\r\n')}\r\n` };
}

/** A payload object's JSON text without its opening brace: `{"t":<stamp>,` + it is the stamped payload. */
export const payloadRest = (payload: Record<string, unknown>): string => JSON.stringify(payload).slice(1);
