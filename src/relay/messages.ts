// What peers send to `switchboard`, checked before anything is done with it. Apart from the engine, so
// that it is checked at once even while the engine (and werift with it) is still loading.
import { SignalError } from '../errors';
import { SERVER_PEER_ID } from '../sessions/server-peer';
import type { LinkMessage } from './link';

const invalid = (message: string) => new SignalError('invalid_request', message);

/** Checks what a peer sent to `switchboard` before anything is done with it: bad input is a 400 at once. */
export function parseMessage(type: string, payload: unknown): LinkMessage {
  switch (type) {
    case 'answer': {
      const sdp = (payload as { sdp?: unknown } | null)?.sdp;
      if (typeof sdp !== 'string' || !sdp.startsWith('v=')) throw invalid('an answer to switchboard needs payload.sdp, the SDP text');
      return { type, sdp };
    }
    case 'ice-candidate': {
      // null, or an empty candidate: the end of the peer's candidates.
      if (payload === null || payload === undefined) return { type, candidate: undefined };
      const { candidate, sdpMid, sdpMLineIndex } = payload as { candidate?: unknown; sdpMid?: unknown; sdpMLineIndex?: unknown };
      if (typeof candidate !== 'string') throw invalid('an ice-candidate to switchboard needs payload.candidate, a string');
      if (candidate === '') return { type, candidate: undefined };
      return {
        type,
        candidate: {
          candidate,
          sdpMid: typeof sdpMid === 'string' ? sdpMid : undefined,
          sdpMLineIndex: typeof sdpMLineIndex === 'number' ? sdpMLineIndex : undefined,
        },
      };
    }
    case 'ice-restart':
      return { type };
    default:
      throw invalid(`${SERVER_PEER_ID} takes answer, ice-candidate and ice-restart messages, not ${type}: the server makes the offers`);
  }
}
