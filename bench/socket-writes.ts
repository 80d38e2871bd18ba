// Writing to Bun's TCP sockets from the load generator without losing or reordering bytes: what the
// kernel does not take now waits in the socket's `pending` and goes out on `drain`.
import type { Socket } from 'bun';

export interface PendingWrites {
  /** Bytes the kernel did not take yet, written again on `drain`. */
  pending: Uint8Array[];
}

/** Writes `bytes` after whatever is still pending. */
export function writeAll(socket: Socket<PendingWrites>, bytes: Uint8Array): void {
  const pending = socket.data.pending;
  if (pending.length) {
    pending.push(bytes);
    return;
  }
  const n = socket.write(bytes);
  if (n < bytes.length) pending.push(bytes.subarray(Math.max(0, n)));
}

/** The socket's `drain` handler: writes what is pending, as far as the kernel takes it. */
export function drainPending(socket: Socket<PendingWrites>): void {
  const pending = socket.data.pending;
  while (pending.length) {
    const head = pending[0] as Uint8Array;
    const n = socket.write(head);
    if (n < head.length) {
      pending[0] = head.subarray(Math.max(0, n));
      return;
    }
    pending.shift();
  }
}
