import type { Guards } from '../auth/guards';
import { bearerToken } from '../auth/tokens';
import type { IceServerSource } from '../ice/ice-servers';
import type { AddressSource } from '../limits/client-ip';
import type { SignallingBackend } from './backend';
import type { PeerParams, RegisterQuery, RegisterResponse } from './model';

/**
 * POST /register and DELETE /register between the request and its answer, whoever serves them
 * (Elysia's router for `app.handle`, Bun's own routes on a listener). Registering: the address's rate,
 * the ticket the credential gives, the registration, and the answer with the peer's ICE servers.
 * Leaving: the credential's check, then the peer leaves.
 */
export class Registrations {
  constructor(
    private readonly signalling: SignallingBackend,
    private readonly guards: Guards,
    private readonly iceServers: IceServerSource,
  ) {}

  async register({ sessionId, peerId }: PeerParams, { mode, role, offer }: RegisterQuery, request: Request, server: AddressSource | null | undefined): Promise<RegisterResponse> {
    const { access, limits, address } = this.guards;
    const client = address(request, server);
    limits.register(() => client);
    const requested = role === undefined ? undefined : role === 'publish' ? 'publisher' : 'viewer';
    const ticket = await access.ticket(sessionId, peerId, bearerToken(request.headers.get('authorization') ?? undefined), requested);
    const origin = { address: client, createsRelay: ticket.createsRelay };
    const { peers, auth, lastEventId, mode: sessionMode } = await this.signalling.register(sessionId, peerId, ticket.admit, mode, origin);
    const serverOffer = offer === 'inline' && sessionMode === 'relay' ? ((await this.signalling.serverOffer(sessionId, peerId)) as RegisterResponse['offer']) : undefined;
    // The peer is proven now (its ticket was checked): its servers come with the answer, as GET /iceServers would give them with its token.
    return {
      message: 'session registered successfully',
      sessionId,
      peerId,
      peers,
      token: ticket.token,
      role: auth?.role,
      lastEventId,
      mode: sessionMode,
      offer: serverOffer,
      iceServers: this.iceServers.inHand(peerId),
    };
  }

  async leave({ sessionId, peerId }: PeerParams, request: Request): Promise<void> {
    await this.guards.access.authorizeLeave(sessionId, peerId, bearerToken(request.headers.get('authorization') ?? undefined));
    await this.signalling.leave(sessionId, peerId);
  }
}
