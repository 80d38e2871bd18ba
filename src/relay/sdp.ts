// What the relay reads of a peer's SDP before werift sees it: the offer of a peer that makes its own (is
// it one the relay can answer? WHIP, WHEP, or a session peer's offer to switchboard), the
// trickle-ice-sdpfrag of a WHIP/WHEP PATCH (RFC 8840), and the fragment the server answers an ICE restart with.
import { SignalError } from '../errors';
import type { IceParameters } from './answering';
import type { RelayConfig } from './settings';

/**
 * Which way media flows for the client: a WHIP client sends, a WHEP client receives; a session peer's
 * offer to switchboard may be either (its role, not the offer, says which way its media goes).
 */
export type Direction = 'send' | 'receive' | 'either';

/** Media sections an offer may have: one of each kind is what a relay session carries, a few spare are tolerated. */
export const MAX_MEDIA_SECTIONS = 8;
/** Candidates in one PATCH: a host has a handful per interface; more is not a client gathering. */
export const MAX_FRAGMENT_CANDIDATES = 64;

const invalid = (message: string) => new SignalError('invalid_sdp', message);

interface MediaSection {
  kind: string;
  port: number;
  lines: string[];
}

function sections(sdp: string): { session: string[]; media: MediaSection[] } {
  const session: string[] = [];
  const media: MediaSection[] = [];
  for (const line of sdp.split(/\r?\n/)) {
    if (line === '') continue;
    const m = /^m=(\S+) (\d+)(?:\/\d+)? /.exec(line);
    if (m) media.push({ kind: m[1] as string, port: Number(m[2]), lines: [] });
    else if (line.startsWith('m=')) throw invalid(`the media line "${line.slice(0, 80)}" cannot be parsed`);
    else (media.at(-1)?.lines ?? session).push(line);
  }
  return { session, media };
}

const attribute = (lines: readonly string[], name: string) => lines.find((l) => l.startsWith(`a=${name}:`))?.slice(name.length + 3);

/** The codecs of a media section the relay can carry, by the names RELAY_VIDEO_CODECS uses (and opus). */
function usableCodecs(section: MediaSection, video: RelayConfig['relayVideoCodecs']): string[] {
  const found: string[] = [];
  for (const line of section.lines) {
    const rtpmap = /^a=rtpmap:(\d+) ([^/\s]+)\//.exec(line);
    if (!rtpmap) continue;
    const [, pt, name] = rtpmap as unknown as [string, string, string];
    const codec = name.toLowerCase();
    const fmtp = section.lines.find((l) => l.startsWith(`a=fmtp:${pt} `)) ?? '';
    if (section.kind === 'audio' && codec === 'opus') found.push('opus');
    if (section.kind !== 'video') continue;
    if (codec === 'vp8' && video.includes('vp8')) found.push('vp8');
    if (codec === 'h264' && video.includes('h264') && /[ ;]packetization-mode=1(;|$)/.test(fmtp)) found.push('h264');
  }
  return found;
}

const takes = (video: RelayConfig['relayVideoCodecs']) => `${video.map((c) => (c === 'vp8' ? 'VP8' : 'H.264 with packetization-mode=1')).join(' or ')} video and Opus audio`;

/**
 * Checks that `sdp` is an offer the relay can answer for a client that sends (WHIP) or receives (WHEP):
 * ICE and DTLS attributes present, at least one audio or video section, each in the right direction and
 * with a codec the relay carries. Throws `invalid_sdp` naming what is wrong.
 */
export function checkOffer(sdp: string, direction: Direction, video: RelayConfig['relayVideoCodecs']): void {
  if (!sdp.startsWith('v=0')) throw invalid('the body is not an SDP offer: it must start with v=0');
  const { session, media } = sections(sdp);
  if (media.length > MAX_MEDIA_SECTIONS) throw invalid(`the offer has ${media.length} media sections; at most ${MAX_MEDIA_SECTIONS} are taken`);
  const active = media.filter((m) => m.port !== 0 && (m.kind === 'audio' || m.kind === 'video'));
  if (active.length === 0) throw invalid('the offer has no audio or video section');
  for (const section of active) {
    const all = [...session, ...section.lines];
    if (!attribute(all, 'ice-ufrag') || !attribute(all, 'ice-pwd')) throw invalid(`m=${section.kind} has no a=ice-ufrag and a=ice-pwd`);
    if (!attribute(all, 'fingerprint')) throw invalid(`m=${section.kind} has no a=fingerprint: WebRTC media needs DTLS`);
    const flow = all.find((l) => /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l))?.slice(2) ?? 'sendrecv';
    const ok = flow === 'sendrecv' || flow === (direction === 'send' ? 'sendonly' : 'recvonly') || (direction === 'either' && flow !== 'inactive');
    if (!ok) {
      if (direction === 'either') throw invalid(`m=${section.kind} is inactive: an offer to switchboard sends or receives`);
      throw invalid(`m=${section.kind} is ${flow}: a ${direction === 'send' ? 'WHIP client sends (sendonly)' : 'WHEP client receives (recvonly)'}`);
    }
    if (usableCodecs(section, video).length === 0) throw invalid(`m=${section.kind} offers no codec this server relays: it takes ${takes(video)}`);
  }
}

/** A PATCH body: the client's ICE credentials and the candidates it trickles (RFC 8840). */
export interface Fragment {
  ufrag?: string;
  pwd?: string;
  candidates: { candidate: string; sdpMid?: string }[];
  endOfCandidates: boolean;
}

/** Reads an `application/trickle-ice-sdpfrag` body; throws `invalid_sdp` for one that is not. */
export function parseFragment(text: string): Fragment {
  const fragment: Fragment = { candidates: [], endOfCandidates: false };
  let mid: string | undefined;
  for (const line of text.split(/\r?\n/)) {
    if (line === '') continue;
    if (line.startsWith('m=')) mid = undefined;
    else if (line.startsWith('a=mid:')) mid = line.slice(6);
    else if (line.startsWith('a=ice-ufrag:')) fragment.ufrag = line.slice(12);
    else if (line.startsWith('a=ice-pwd:')) fragment.pwd = line.slice(10);
    else if (line === 'a=end-of-candidates') fragment.endOfCandidates = true;
    else if (line.startsWith('a=candidate:')) {
      if (fragment.candidates.length >= MAX_FRAGMENT_CANDIDATES) throw invalid(`a fragment carries at most ${MAX_FRAGMENT_CANDIDATES} candidates`);
      if (line.split(' ').length < 8) throw invalid(`"${line.slice(0, 80)}" is not an ICE candidate`);
      fragment.candidates.push({ candidate: line.slice(2), sdpMid: mid });
    } else if (!/^[a-z]=/.test(line)) throw invalid(`"${line.slice(0, 80)}" is not an SDP line`);
  }
  return fragment;
}

/** The offer's first media section (the one a bundle's candidates belong to): its kind and mid. */
export function firstMedia(sdp: string): { kind: string; mid?: string } {
  const first = sections(sdp).media.find((m) => m.port !== 0);
  return { kind: first?.kind ?? 'video', mid: first && attribute(first.lines, 'mid') };
}

/** The server's answer to an ICE restart: its new credentials and candidates, in the client's first media section. */
export function restartFragment(ice: IceParameters, media: { kind: string; mid?: string }): string {
  const lines = [`a=ice-ufrag:${ice.ufrag}`, `a=ice-pwd:${ice.pwd}`, `m=${media.kind} 9 UDP/TLS/RTP/SAVPF 0`];
  if (media.mid !== undefined) lines.push(`a=mid:${media.mid}`);
  for (const candidate of ice.candidates) lines.push(`a=${candidate}`);
  lines.push('a=end-of-candidates');
  return `${lines.join('\r\n')}\r\n`;
}
