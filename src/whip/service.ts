// WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep): two more doors into relay sessions. A WHIP client is
// the session's publisher, a WHEP client one of its viewers; both are ordinary peers of the signalling
// service, whose signalling is an HTTP exchange (the client offers, the server answers) instead of an
// event stream.
//
// A resource lives as long as its peer's registration. Its "stream", as the signalling service counts
// streams, is its media connection: attached while ICE/DTLS is connected, detached when it fails,
// closes, or the client's consent checks stop for 30 s (RFC 7675: a client that vanished), so that a
// connection that does not come back within the peer timeout (PEER_TIMEOUT_MS) ends the registration,
// and one that never connects ends it the same way. DELETE ends it at once.

import { randomBytes } from 'node:crypto';
import { decodeJwt } from 'jose';
import type { PeerAccess } from '../auth/access';
import { tokenHash, tokenMatches } from '../auth/tokens';
import type { Config } from '../config';
import type { EventSink } from '../delivery/delivery';
import { SignalError } from '../errors';
import type { IceServer, IceServerSource } from '../ice/ice-servers';
import type { IceParameters } from '../relay/answering';
import { checkOffer, type Direction, firstMedia, parseFragment, restartFragment } from '../relay/sdp';
import type { RelayConfig } from '../relay/settings';
import type { SignallingBackend } from '../sessions/backend';
import type { SessionEvent } from '../sessions/events';
import { ID_PATTERN } from '../sessions/model';
import type { Role } from '../sessions/store';

/** Which door: WHIP publishes, WHEP plays. */
export type Endpoint = 'whip' | 'whep';

/** What WHIP and WHEP need of the relay (`LazyRelay`). */
export interface OfferAnswerer {
  expectOffer(sessionId: string, peerId: string): void;
  forgetOffer(sessionId: string, peerId: string): void;
  answer(sessionId: string, peerId: string, role: Role, offerSdp: string, onState?: (state: string) => void): Promise<string>;
  restartIce(sessionId: string, peerId: string, remote: Pick<IceParameters, 'ufrag' | 'pwd'>): Promise<IceParameters | undefined>;
  /** A message to `switchboard`, as `POST /message` hands it over: how trickled candidates reach the connection. */
  receive(sessionId: string, peerId: string, type: string, payload: unknown): void;
}

export interface WhipDeps {
  signalling: SignallingBackend;
  /** Undefined where relay sessions cannot run (a cluster): every request is refused. */
  relay: OfferAnswerer | undefined;
  access: PeerAccess;
  iceServers: IceServerSource;
  /** Random ids; resource ids need at least 128 bits. */
  random?: (bytes: number) => string;
}

export type WhipConfig = Pick<RelayConfig, 'relayVideoCodecs'> & Pick<Config, 'redisUrl'>;

/** What a POST created: the resource's path, its entity tag, the answer, and the ICE servers to announce. */
export interface Created {
  location: string;
  etag: string;
  answer: string;
  iceServers: IceServer;
  peerId: string;
}

/** What a PATCH answers: 204 for trickled candidates, 200 with the server's fragment for an ICE restart. */
export type Patched = { etag: string; fragment?: string };

interface Resource {
  readonly id: string;
  readonly endpoint: Endpoint;
  readonly sessionId: string;
  readonly peerId: string;
  etag: string;
  /** The bearer credential the POST brought (its hash): PATCH and DELETE must bring the same. */
  readonly bearerHash: string | undefined;
  /** The registration's own token (its hash): tells this registration from a later one of the same id. */
  readonly registrationHash: string | undefined;
  /** The client's first media section, which a restart's fragment answers in. */
  readonly media: { kind: string; mid?: string };
  /** Attached to the peer's mailbox while the media connection is up. */
  sink: ConnectionSink | undefined;
  gone: boolean;
}

const ROLE: Record<Endpoint, Role> = { whip: 'publisher', whep: 'viewer' };
const DIRECTION: Record<Endpoint, Direction> = { whip: 'send', whep: 'receive' };
const ID = new RegExp(ID_PATTERN);
const randomId = (bytes: number) => randomBytes(bytes).toString('base64url');

/** 128 bits: a resource's URL is also what lets an open-mode client end its session. */
export const RESOURCE_ID_BYTES = 16;

/**
 * The signalling service's view of a WHIP/WHEP peer's "stream": its media connection. Events written to
 * it are dropped: such a client has no event channel, and what it would be told (new-peer, peer-left)
 * it learns from its media.
 */
class ConnectionSink implements EventSink {
  private open = true;
  private closed: (() => void) | undefined;

  get isOpen(): boolean {
    return this.open;
  }

  begin(): void {}

  write(): boolean {
    return this.open;
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    this.closed?.();
  }

  abort(): void {
    this.close();
  }

  onClose(fn: () => void): void {
    this.closed = fn;
  }

  onDrain(): void {}
}

export class WhipService {
  /** By session, then peer id: each registered WHIP/WHEP peer has one resource. */
  private readonly resources = new Map<string, Map<string, Resource>>();
  private readonly random: (bytes: number) => string;

  constructor(
    private readonly config: WhipConfig,
    private readonly deps: WhipDeps,
  ) {
    this.random = deps.random ?? randomId;
  }

  /**
   * POST: registers the client as the relay session's publisher (WHIP) or a viewer (WHEP), creating the
   * session if new, and answers its offer. A WHEP client of a session without a publisher yet is
   * answered all the same: its video starts when a publisher arrives.
   */
  async create(endpoint: Endpoint, sessionId: string, requestedPeer: string | undefined, bearer: string | undefined, offer: string, address?: string): Promise<Created> {
    const { signalling, access } = this.deps;
    const relay = this.relay();
    checkOffer(offer, DIRECTION[endpoint], this.config.relayVideoCodecs);
    if (access.mode !== 'open' && bearer === undefined) {
      throw new SignalError(
        'unauthorized',
        `AUTH_MODE=${access.mode}: ${endpoint.toUpperCase()} needs Authorization: Bearer <token>, an invite's join token or a JWT from your backend`,
      );
    }
    const peerId = requestedPeer ?? this.defaultPeer(bearer);
    const role = ROLE[endpoint];
    await this.checkSession(endpoint, sessionId, peerId);
    const ticket = await access.ticket(sessionId, peerId, bearer, role);
    relay.expectOffer(sessionId, peerId);
    let registrationHash: string | undefined;
    try {
      // The same caps and rules as any relay peer: RELAY_MODE, MAX_RELAY_PEERS, the per-address limits.
      const registration = await signalling.register(sessionId, peerId, ticket.admit, 'relay', { address, createsRelay: ticket.createsRelay });
      registrationHash = registration.auth?.tokenHash;
      if (registration.auth && registration.auth.role !== role) {
        await signalling.leave(sessionId, peerId);
        throw new SignalError('forbidden', `peer ${peerId} may join session ${sessionId} as a ${registration.auth.role} only`);
      }
    } catch (e) {
      relay.forgetOffer(sessionId, peerId);
      throw e;
    }

    const resource: Resource = {
      id: this.random(RESOURCE_ID_BYTES),
      endpoint,
      sessionId,
      peerId,
      etag: this.newEtag(),
      bearerHash: bearer === undefined ? undefined : tokenHash(bearer),
      registrationHash,
      media: firstMedia(offer),
      sink: undefined,
      gone: false,
    };
    this.drop(sessionId, peerId);
    let peers = this.resources.get(sessionId);
    if (!peers) this.resources.set(sessionId, (peers = new Map()));
    peers.set(peerId, resource);

    let answer: string;
    try {
      answer = await relay.answer(sessionId, peerId, role, offer, (state) => this.connection(resource, state));
    } catch (e) {
      await this.end(resource);
      if (e instanceof SignalError) throw e;
      throw new SignalError('invalid_sdp', `the offer could not be answered: ${(e as Error).message}`);
    }
    if (resource.gone) throw new SignalError('peer_not_found', `peer ${peerId} left session ${sessionId} before its offer was answered`);
    return { location: `/${endpoint}/${sessionId}/${resource.id}`, etag: resource.etag, answer, iceServers: await this.deps.iceServers.get(peerId), peerId };
  }

  /**
   * PATCH: candidates the client trickles (its entity tag in If-Match), or an ICE restart (`If-Match: *`
   * with new credentials), answered with the server's new credentials and candidates and a new tag.
   */
  async patch(endpoint: Endpoint, sessionId: string, resourceId: string, bearer: string | undefined, ifMatch: string | undefined, body: string): Promise<Patched> {
    const resource = this.authorized(endpoint, sessionId, resourceId, bearer);
    if (ifMatch === undefined) {
      throw new SignalError('precondition_required', 'a PATCH needs If-Match: the ETag the POST answered with, or "*" for an ICE restart');
    }
    const fragment = parseFragment(body);
    const relay = this.relay();
    const restart = ifMatch.trim() === '*';
    if (!restart && !ifMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === resource.etag)) {
      throw new SignalError('precondition_failed', `If-Match ${ifMatch.slice(0, 64)} is not this resource's current ETag; an ICE restart changed it`);
    }
    let answer: string | undefined;
    if (restart) {
      if (!fragment.ufrag || !fragment.pwd) throw new SignalError('invalid_sdp', 'an ICE restart (If-Match: *) needs the new a=ice-ufrag and a=ice-pwd');
      const ice = await relay.restartIce(sessionId, resource.peerId, { ufrag: fragment.ufrag, pwd: fragment.pwd });
      if (!ice || resource.gone) throw this.notFound(endpoint, sessionId, resourceId);
      resource.etag = this.newEtag();
      answer = restartFragment(ice, resource.media);
    }
    for (const candidate of fragment.candidates) relay.receive(sessionId, resource.peerId, 'ice-candidate', candidate);
    if (fragment.endOfCandidates) relay.receive(sessionId, resource.peerId, 'ice-candidate', null);
    return { etag: resource.etag, fragment: answer };
  }

  /** DELETE: the peer leaves its session at once (its viewers get peer-left when it is the publisher). */
  async remove(endpoint: Endpoint, sessionId: string, resourceId: string, bearer: string | undefined): Promise<void> {
    await this.end(this.authorized(endpoint, sessionId, resourceId, bearer));
  }

  /** The servers a client is told of on OPTIONS, before it authenticated: URLs only, no credentials. */
  async publicIceServers(): Promise<IceServer> {
    const { urls } = await this.deps.iceServers.get();
    return { urls };
  }

  /** Keeps the resources in step with the registrations: a peer gone, taken over or closed takes its resource with it. */
  readonly observe = (event: SessionEvent): void => {
    if (event.type === 'session-closed') {
      for (const resource of this.resources.get(event.sessionId)?.values() ?? []) this.forget(resource);
      this.resources.delete(event.sessionId);
    } else if (event.type === 'peer-left' || (event.type === 'peer-joined' && event.takeover)) {
      this.drop(event.sessionId, event.peerId);
    }
  };

  private relay(): OfferAnswerer {
    if (!this.deps.relay) {
      const why = this.config.redisUrl
        ? 'they answer with one process’s media, and this one is part of a cluster (REDIS_URL) whose relay sessions move between instances'
        : 'relay sessions are off (RELAY_MODE=off)';
      throw new SignalError('invalid_request', `WHIP and WHEP need relay sessions, and this server runs none: ${why}`);
    }
    return this.deps.relay;
  }

  /** Without ?peer=: the JWT's peer in jwt mode (it names exactly one), else a new random id. */
  private defaultPeer(bearer: string | undefined): string {
    if (this.deps.access.mode === 'jwt' && bearer !== undefined) {
      try {
        // Read only to choose the id: the registration verifies the JWT.
        const { peer } = decodeJwt(bearer);
        if (typeof peer === 'string' && ID.test(peer)) return peer;
      } catch {
        // Not a JWT: the registration refuses it.
      }
    }
    return this.random(12);
  }

  /**
   * Refuses, with the reason, a session WHIP or WHEP cannot join: a mesh session, (WHIP) one with a
   * publisher, or (token mode) one without invites.
   */
  private async checkSession(endpoint: Endpoint, sessionId: string, peerId: string): Promise<void> {
    const session = await this.deps.signalling.snapshot(sessionId);
    // In token mode the bearer is an invite's join token: only a session the admin API created with
    // invites has one to check it against (without, any new id could register, token or not).
    if (this.deps.access.mode === 'token' && !session?.invites) {
      throw new SignalError(
        'forbidden',
        `AUTH_MODE=token: ${endpoint.toUpperCase()} joins sessions created with the admin API (POST /sessions) that invite this peer; session ${sessionId} ${session ? 'invites no one' : 'does not exist'}`,
      );
    }
    if (!session) return;
    if (session.mode !== 'relay') {
      throw new SignalError(
        'mode_conflict',
        `session ${sessionId} is a ${session.mode} session, whose media goes peer to peer; ${endpoint.toUpperCase()} joins relay sessions only`,
      );
    }
    const publisher = session.peers.find((p) => p.role === 'publisher' && p.id !== peerId);
    if (endpoint === 'whip' && publisher) {
      throw new SignalError('publisher_exists', `relay session ${sessionId} already has publisher ${publisher.id}; a relay session has one`);
    }
  }

  private authorized(endpoint: Endpoint, sessionId: string, resourceId: string, bearer: string | undefined): Resource {
    const resource = [...(this.resources.get(sessionId)?.values() ?? [])].find((r) => r.id === resourceId && r.endpoint === endpoint);
    if (!resource) throw this.notFound(endpoint, sessionId, resourceId);
    if (resource.bearerHash !== undefined) {
      if (bearer === undefined) throw new SignalError('unauthorized', 'this resource was created with a bearer token: send the same one (Authorization: Bearer <token>)');
      if (!tokenMatches(bearer, resource.bearerHash)) throw new SignalError('forbidden', 'that is not the token this resource was created with');
    }
    return resource;
  }

  private notFound(endpoint: Endpoint, sessionId: string, resourceId: string): SignalError {
    return new SignalError('resource_not_found', `no ${endpoint.toUpperCase()} resource ${resourceId} in session ${sessionId}: it was deleted, or its peer left`);
  }

  /** The media connection changed: up, the peer counts as streaming; down, the peer timeout runs. */
  private connection(resource: Resource, state: string): void {
    if (resource.gone) return;
    if (state === 'connected') {
      if (resource.sink?.isOpen) return;
      const sink = new ConnectionSink();
      resource.sink = sink;
      Promise.resolve(this.deps.signalling.connect(resource.sessionId, resource.peerId, sink)).catch(() => sink.close());
    } else if (state === 'disconnected' || state === 'failed' || state === 'closed' || state === 'silent') {
      resource.sink?.close();
      resource.sink = undefined;
    }
  }

  /** Ends the resource and, when the registration is still its own, the peer's registration. */
  private async end(resource: Resource): Promise<void> {
    this.drop(resource.sessionId, resource.peerId, resource);
    const { signalling } = this.deps;
    try {
      const auth = await signalling.peerAuth(resource.sessionId, resource.peerId);
      if (auth?.tokenHash === resource.registrationHash) await signalling.leave(resource.sessionId, resource.peerId);
    } catch (e) {
      // The peer or its session is gone already: nothing to end.
      if (!(e instanceof SignalError)) throw e;
    }
  }

  /** Forgets the peer's resource (only `only`, when given). */
  private drop(sessionId: string, peerId: string, only?: Resource): void {
    const peers = this.resources.get(sessionId);
    const resource = peers?.get(peerId);
    if (!peers || !resource || (only && resource !== only)) return;
    peers.delete(peerId);
    if (peers.size === 0) this.resources.delete(sessionId);
    this.forget(resource);
  }

  private forget(resource: Resource): void {
    resource.gone = true;
    resource.sink?.close();
    resource.sink = undefined;
  }

  private newEtag(): string {
    return `"${this.random(12)}"`;
  }
}
