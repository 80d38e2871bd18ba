// What peers send to `switchboard`, checked before anything is done with it. Apart from the engine, so
// that it is checked at once even while the engine (and werift with it) is still loading.
import { SignalError } from '../errors';
import { SERVER_PEER_ID } from '../sessions/server-peer';
import type { LinkMessage } from './link';
import { checkOffer } from './sdp';

const invalid = (message: string) => new SignalError('invalid_request', message);

/**
 * The longest candidate line taken, in characters. A real one (RFC 8839: foundation, component,
 * transport, priority, address, port, type, related address and the extensions browsers add) is
 * 60 to 250: the limit leaves room for any of them, not for a payload smuggled inside one.
 */
export const MAX_CANDIDATE_LENGTH = 1024;
/** The longest sdpMid: a media section's identification tag, "0" or "video" in practice. */
export const MAX_MID_LENGTH = 64;
/** Media sections a relay offer has far fewer of (it has two). */
const MAX_MLINE_INDEX = 256;
/** The longest usernameFragment: RFC 8445 allows 4 to 256 characters. */
export const MAX_UFRAG_LENGTH = 256;
/**
 * Candidates one connection takes from its peer per ICE generation (from one offer of the server to the
 * next restart), those held before the answer among them, and the messages held for one peer while the
 * engine loads. A browser gathers a handful per network interface and ICE server: tens at most.
 */
export const MAX_REMOTE_CANDIDATES = 64;

/** The SDP text of an offer or answer's payload (`{type, sdp}`, as a browser's description is). */
function sdpOf(payload: unknown, what: string): string {
  const sdp = (payload as { sdp?: unknown } | null)?.sdp;
  if (typeof sdp !== 'string' || !sdp.startsWith('v=')) throw invalid(`${what} to switchboard needs payload.sdp, the SDP text`);
  return sdp;
}

/** Checks what a peer sent to `switchboard` before anything is done with it: bad input is a 400 at once. */
export function parseMessage(type: string, payload: unknown): LinkMessage {
  switch (type) {
    case 'offer': {
      // A peer that makes its own connection with the server, as a WHEP player does (see SessionRouter.offered).
      const sdp = sdpOf(payload, 'an offer');
      // Any codec the relay can carry at all; RELAY_VIDEO_CODECS narrows it in the answer.
      checkOffer(sdp, 'either', ['vp8', 'h264']);
      return { type, sdp };
    }
    case 'answer':
      return { type, sdp: sdpOf(payload, 'an answer') };
    case 'ice-candidate': {
      // null, or an empty candidate: the end of the peer's candidates.
      if (payload === null || payload === undefined) return { type, candidate: undefined };
      const { candidate, sdpMid, sdpMLineIndex, usernameFragment } = payload as { candidate?: unknown; sdpMid?: unknown; sdpMLineIndex?: unknown; usernameFragment?: unknown };
      if (typeof candidate !== 'string') throw invalid('an ice-candidate to switchboard needs payload.candidate, a string');
      if (candidate === '') return { type, candidate: undefined };
      if (candidate.length > MAX_CANDIDATE_LENGTH) {
        throw invalid(`payload.candidate is ${candidate.length} characters; a candidate line to switchboard is at most ${MAX_CANDIDATE_LENGTH}`);
      }
      if (typeof sdpMid === 'string' && sdpMid.length > MAX_MID_LENGTH) throw invalid(`payload.sdpMid is at most ${MAX_MID_LENGTH} characters`);
      if (typeof usernameFragment === 'string' && usernameFragment.length > MAX_UFRAG_LENGTH) {
        throw invalid(`payload.usernameFragment is at most ${MAX_UFRAG_LENGTH} characters`);
      }
      if (typeof sdpMLineIndex === 'number' && !(Number.isInteger(sdpMLineIndex) && sdpMLineIndex >= 0 && sdpMLineIndex < MAX_MLINE_INDEX)) {
        throw invalid(`payload.sdpMLineIndex is the index of a media section: a whole number from 0 to ${MAX_MLINE_INDEX - 1}`);
      }
      return {
        type,
        candidate: {
          candidate,
          sdpMid: typeof sdpMid === 'string' ? sdpMid : undefined,
          sdpMLineIndex: typeof sdpMLineIndex === 'number' ? sdpMLineIndex : undefined,
          usernameFragment: typeof usernameFragment === 'string' ? usernameFragment : undefined,
        },
      };
    }
    case 'ice-restart':
      return { type };
    default:
      throw invalid(`${SERVER_PEER_ID} takes offer, answer, ice-candidate and ice-restart messages, not ${type}`);
  }
}

/**
 * Whether a message makes the server negotiate again (an offer, or a request for its own offer with new
 * ICE credentials): those count against RELAY_ICE_RESTARTS_PER_MIN, whoever offers.
 */
export const negotiates = (message: LinkMessage): boolean => message.type === 'ice-restart' || message.type === 'offer';
