import { type AddressSource, clientAddress } from '../limits/client-ip';
import type { Limits } from '../limits/limits';
import type { PeerAccess } from './access';

/** What the API routes check before they act: who the caller is, and how much it may do. */
export interface Guards {
  access: PeerAccess;
  limits: Limits;
  /** The client's address (see `clientAddress`); undefined for a request handled in-process. */
  address(request: Request, server: AddressSource | null | undefined): string | undefined;
}

export function guards(access: PeerAccess, limits: Limits, trustProxy: number): Guards {
  return { access, limits, address: (request, server) => clientAddress(request, server, trustProxy) };
}
