// A relay connection with a peer that brings its own offer (WHIP, WHEP): the peer offers over HTTP, the
// server answers. The same connection and forwarding as a `ServerLink`; only who offers differs.
import type { PeerConfig } from 'werift';
import { Ticker } from '../clock';
import { type LinkDeps, ServerLink } from './link';

/** How a peer's ICE agent is named and reached: what an ICE restart exchanges. */
export interface IceParameters {
  ufrag: string;
  pwd: string;
  /** `candidate:…` attribute values, without `a=`. */
  candidates: string[];
}

export interface AnsweringDeps extends Omit<LinkDeps, 'send'> {
  /**
   * How the server's candidates found after the answer reach the peer: a session peer's stream. A
   * WHIP/WHEP peer has none: its candidates travel in the answers only.
   */
  send?: LinkDeps['send'];
  /** The answer waits this long at most for the server's candidates to be gathered. */
  gatherMs: number;
  /**
   * Told of every change of the connection's state (`connected`, `failed`, `closed`, …), and of `silent`
   * when a connected peer stopped its consent checks (then `connected` again if they resume).
   */
  onState?(state: string): void;
}

/**
 * RFC 7675: consent to send expires 30 s after the last check answered. The relay is an ICE-lite agent
 * and sends no checks of its own; a peer's full agent sends one every 5 s or so, so a peer that sent
 * none for this long is gone (its page closed, its network went) even though nothing closed.
 */
export const CONSENT_LOST_MS = 30_000;
const CONSENT_CHECK_MS = 5000;

/** Host candidates are gathered in milliseconds; past this the answer goes with what there is. */
export const GATHER_MS = 2000;

export class AnsweringLink extends ServerLink {
  constructor(
    peerId: string,
    config: Partial<PeerConfig>,
    private readonly answering: AnsweringDeps,
  ) {
    super(peerId, config, { ...answering, send: answering.send ?? (() => undefined) });
    this.consent = new Ticker(answering.clock, CONSENT_CHECK_MS, () => this.checkConsent());
    this.pc.connectionStateChange.subscribe((state) => {
      this.connected = state === 'connected';
      if (this.connected) {
        this.lastCheck = answering.clock.now();
        this.silent = false;
        this.consent.start();
      } else this.consent.stop();
      answering.onState?.(state);
    });
  }

  private readonly consent: Ticker;
  private connected = false;
  private silent = false;
  private lastCheck = 0;
  private readonly listened = new WeakSet<object>();

  override close(): void {
    this.consent.stop();
    super.close();
  }

  private checkConsent(): void {
    if (!this.connected || this.silent || this.answering.clock.now() - this.lastCheck <= CONSENT_LOST_MS) return;
    this.silent = true;
    this.deps.log(`relay: ${this.peerId} sent no consent check for ${CONSENT_LOST_MS} ms; it counts as gone`);
    this.answering.onState?.('silent');
  }

  /**
   * Notes every STUN binding request the peer sends (its connectivity and consent checks). werift keeps
   * its sockets' protocols unexported: reached as `guardSockets` reaches them (werift is pinned).
   */
  private hearChecks(): void {
    for (const transport of this.pc.iceTransports) {
      const { protocols } = transport.connection as unknown as { protocols?: { onRequestReceived?: { subscribe(fn: () => void): unknown } }[] };
      for (const protocol of protocols ?? []) {
        if (!protocol.onRequestReceived || this.listened.has(protocol)) continue;
        this.listened.add(protocol);
        protocol.onRequestReceived.subscribe(() => {
          this.lastCheck = this.answering.clock.now();
          if (!this.silent) return;
          this.silent = false;
          this.answering.onState?.('connected');
        });
      }
    }
  }

  /** Consent checks are listened for on the sockets an answer made. */
  protected override answered(): void {
    this.hearChecks();
  }

  /**
   * An ICE restart the peer asked for with new credentials (a WHIP/WHEP PATCH with `If-Match: *`): the
   * rest of the session stays as negotiated, so the peer's last offer is applied again with the new
   * credentials, and the server answers with new ones of its own.
   */
  restart(remote: Pick<IceParameters, 'ufrag' | 'pwd'>): Promise<IceParameters> {
    return this.run(async () => {
      const previous = this.pc.remoteDescription?.sdp;
      if (!previous) throw new Error('no offer to restart from');
      const offer = previous
        .replace(/^a=ice-ufrag:.*$/gm, `a=ice-ufrag:${remote.ufrag}`)
        .replace(/^a=ice-pwd:.*$/gm, `a=ice-pwd:${remote.pwd}`)
        .replace(/^a=(candidate:|end-of-candidates).*\r?\n/gm, '');
      return iceParameters(await this.applyOffer(offer));
    });
  }
}

/** The ICE credentials and candidates of the first media section that has them. */
export function iceParameters(sdp: string): IceParameters {
  const ufrag = /^a=ice-ufrag:(.*?)\r?$/m.exec(sdp)?.[1] ?? '';
  const pwd = /^a=ice-pwd:(.*?)\r?$/m.exec(sdp)?.[1] ?? '';
  const candidates = [...sdp.matchAll(/^a=(candidate:.*?)\r?$/gm)].map((m) => m[1] as string);
  return { ufrag, pwd, candidates: [...new Set(candidates)] };
}
