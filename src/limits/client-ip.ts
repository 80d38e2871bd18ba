/** The part of Bun's `Server` that knows a request's peer address; absent under `app.handle`. */
export interface AddressSource {
  requestIP(request: Request): { address: string } | null;
}

/**
 * The address of the client that sent `request`. With `trustProxy` = N > 0, the N-th address from the
 * right of X-Forwarded-For: each trusted proxy appends the address it received from, so entries left
 * of that were written by the client and prove nothing. Otherwise, and whenever the header is missing
 * or malformed, the socket's address. Undefined when there is no socket (a request handled in-process).
 */
export function clientAddress(request: Request, server: AddressSource | null | undefined, trustProxy: number): string | undefined {
  if (trustProxy > 0) {
    const forwarded = request.headers.get('x-forwarded-for');
    if (forwarded) {
      const hops = forwarded.split(',').map((s) => s.trim());
      const candidate = hops[Math.max(0, hops.length - trustProxy)];
      if (candidate && isIpAddress(candidate)) return candidate;
    }
  }
  const address = server?.requestIP(request)?.address;
  return address ? address : undefined;
}

/**
 * The key rate limits count under: an IPv4 address as is, an IPv6 address by its /64 (one host usually
 * has a whole /64 to pick addresses from), an IPv4-mapped IPv6 address as the IPv4 one.
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1]) return mapped[1];
  // The addresses given here are well-formed (the socket's, or checked by clientAddress): an IPv6 one has a colon.
  if (!address.includes(':')) return address;
  const [head = '', tail = ''] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/**
 * Whether `text` is an IPv4 or IPv6 address. node:net's check, loaded only when it is needed: with
 * TRUST_PROXY, for X-Forwarded-For. A server without it never loads node:net, and starts that much sooner.
 */
function isIpAddress(text: string): boolean {
  const { isIP } = require('node:net') as typeof import('node:net');
  return isIP(text) !== 0;
}
