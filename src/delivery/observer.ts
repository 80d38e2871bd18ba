import type { Delivered } from './delivery';

/** What became of a client message: written to the target's open stream, held for it, or refused. */
export type MessageOutcome = 'relayed' | 'queued' | 'rejected';

export type PeerLeftReason = 'left' | 'timeout';

export type ResumeOutcome = 'resumed' | 'resume_gap' | 'superseded';

/**
 * What the signalling core reports as it works, for metrics. Several calls sit on the forwarding hot
 * path: an implementation only bumps numbers (no allocation, no string building), and the core
 * passes only values it already holds.
 */
export interface DeliveryObserver {
  /** A client message of `type` (any string a client chose) was forwarded to an open stream (outcome `relayed`), held or refused. */
  message(type: string, outcome: MessageOutcome): void;
  /** A peer registered (or took its id over); the others were sent `new-peer`. */
  peerJoined(): void;
  /** A peer left or timed out; the others, if any are left, were sent `peer-left`. */
  peerLeft(reason: PeerLeftReason): void;
  /** A stream asked to resume from a Last-Event-ID. */
  resumed(outcome: ResumeOutcome): void;
  /**
   * A time stamp for a client message accepted now, handed back to `delivered` once the message is
   * written to its target's stream; a negative stamp means "not measured" and is never handed back.
   */
  stamp(): number;
  /** A message accepted at `stamp` was written to its target's stream. */
  delivered(stamp: number): void;
}

/** Observes nothing: the default wherever no metrics are wanted. */
export const noObserver: DeliveryObserver = {
  message() {},
  peerJoined() {},
  peerLeft() {},
  resumed() {},
  stamp: () => -1,
  delivered() {},
};

/** Forwards a client message with `forward`, and counts it by what became of it (a throw: rejected). */
export function countMessage(observer: DeliveryObserver, type: string, forward: () => Delivered): Delivered {
  let result: Delivered;
  try {
    result = forward();
  } catch (e) {
    observer.message(type, 'rejected');
    throw e;
  }
  observer.message(type, result === 'sent' ? 'relayed' : 'queued');
  return result;
}
