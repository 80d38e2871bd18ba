import type { Role } from './store';

/**
 * What happened to sessions and peers, as the service reports it to whoever listens (notifications,
 * metrics). Listeners run synchronously inside the service: they must be quick and must not throw.
 */
export type SessionEvent =
  | { type: 'session-created'; sessionId: string; by: 'register' | 'admin' }
  | { type: 'peer-joined'; sessionId: string; peerId: string; role?: Role; takeover: boolean }
  | { type: 'peer-left'; sessionId: string; peerId: string; reason: 'left' | 'timeout' }
  | { type: 'session-closed'; sessionId: string; reason: 'closed' | 'empty' | 'idle' };

export type SessionListener = (event: SessionEvent) => void;
