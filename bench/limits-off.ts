/**
 * The per-client limits off, for a benchmark server: one load process on one address is every client here,
 * and what is measured is the server's path, not its admission.
 */
export const LIMITS_OFF: Readonly<Record<string, string>> = {
  REGISTER_RATE_PER_MIN: '0',
  MESSAGE_RATE_PER_S: '0',
  PEER_MESSAGE_RATE_PER_S: '0',
  MAX_STREAMS_PER_IP: '0',
  MAX_SESSIONS_PER_IP: '0',
  MAX_PEERS_PER_IP: '0',
};
