/**
 * The Content-Security-Policy of the client page. The page is Bun's bundle of src/client: external
 * scripts and stylesheets from this origin only, no inline code. It talks to its own origin (fetch,
 * EventSource, WebSocket: 'self' covers ws:/wss: on the same host), shows camera and remote streams
 * (MediaStream objects, blob: and mediastream: URLs) and may draw data: or blob: images.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "media-src 'self' blob: mediastream:",
  "connect-src 'self'",
  "font-src 'self'",
  "manifest-src 'self'",
  "worker-src 'self' blob:",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers on the page and on every asset of it. */
export function securityHeaders(tls: boolean): Record<string, string> {
  const headers: Record<string, string> = {
    'content-security-policy': CONTENT_SECURITY_POLICY,
    'x-content-type-options': 'nosniff',
    // Event stream URLs carry ?token=: never let them leave in a Referer.
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-resource-policy': 'same-origin',
    'permissions-policy': 'camera=(self), microphone=(self), display-capture=(self), geolocation=(), payment=(), usb=()',
  };
  if (tls) headers['strict-transport-security'] = 'max-age=31536000';
  return headers;
}
