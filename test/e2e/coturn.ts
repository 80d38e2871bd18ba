// A real coturn (Debian's `turnserver`) on 127.0.0.1 and a free port, checking credentials the way
// TURN_SECRET issues them (use-auth-secret). Nothing of the machine's own configuration is read.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Subprocess } from 'bun';

export interface Coturn {
  port: number;
  /** The URL for ICE_URLS. */
  url: string;
  secret: string;
  /** coturn's log so far. */
  log(): string;
  /** Ends the process (SIGKILL: as if the machine died, no goodbye to its clients). */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A port free for both TCP and UDP on 127.0.0.1 right now (coturn listens on both). */
async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const tcp = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } });
    const { port } = tcp;
    tcp.stop(true);
    if (port === 3478) continue;
    try {
      const udp = await Bun.udpSocket({ hostname: '127.0.0.1', port });
      udp.close();
      return port;
    } catch {
      // Taken for UDP: try another.
    }
  }
  throw new Error('no free port for coturn');
}

/**
 * Sends a STUN Binding request to 127.0.0.1:port over UDP and resolves whether a Binding success
 * answer with the same transaction id came back within `waitMs`.
 */
export async function stunBinding(port: number, waitMs = 200): Promise<boolean> {
  const transaction = crypto.getRandomValues(new Uint8Array(12));
  const request = new Uint8Array(20);
  const view = new DataView(request.buffer);
  view.setUint16(0, 0x0001); // Binding request
  view.setUint16(2, 0); // no attributes
  view.setUint32(4, 0x2112a442); // magic cookie
  request.set(transaction, 8);
  let answered!: (ok: boolean) => void;
  const result = new Promise<boolean>((resolve) => {
    answered = resolve;
  });
  const socket = await Bun.udpSocket({
    hostname: '127.0.0.1',
    socket: {
      data(_socket, data) {
        const type = (data[0]! << 8) | data[1]!;
        const sameTransaction = transaction.every((b, i) => data[8 + i] === b);
        if (type === 0x0101 && sameTransaction) answered(true);
      },
      // Nothing listens yet: the kernel answers with "port unreachable".
      error() {
        answered(false);
      },
    },
  });
  const timer = setTimeout(() => answered(false), waitMs);
  socket.send(request, port, '127.0.0.1');
  const ok = await result;
  clearTimeout(timer);
  socket.close();
  return ok;
}

/**
 * Starts coturn and resolves once it answers STUN on its port. `again` starts it on the port and with
 * the secret of one that was stopped (a TURN server restarting).
 */
export async function startCoturn(again?: Pick<Coturn, 'port' | 'secret'>): Promise<Coturn> {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-coturn-'));
  const secret = again?.secret ?? Buffer.from(crypto.getRandomValues(new Uint8Array(18))).toString('base64url');
  const port = again?.port ?? (await freePort());
  const logFile = join(dir, 'turn.log');
  const proc: Subprocess = Bun.spawn(
    [
      'turnserver',
      '-n', // no configuration file: only these flags
      `--listening-ip=127.0.0.1`,
      `--relay-ip=127.0.0.1`,
      `--listening-port=${port}`,
      '--use-auth-secret',
      `--static-auth-secret=${secret}`,
      '--realm=switchboard.test',
      '--allow-loopback-peers',
      '--no-tls',
      '--no-dtls',
      '--no-cli',
      '--no-rfc5780',
      '--fingerprint',
      `--userdb=${join(dir, 'turndb')}`,
      `--pidfile=${join(dir, 'turn.pid')}`,
      `--log-file=${logFile}`,
      '--simple-log',
      '--no-stdout-log',
      '--verbose',
    ],
    { stdin: 'ignore', stdout: 'ignore', stderr: 'pipe' },
  );
  let stderr = '';
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr as unknown as AsyncIterable<Uint8Array>) stderr += decoder.decode(chunk, { stream: true });
  })();
  const log = () => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (proc.exitCode === null) proc.kill(signal);
    await proc.exited;
    rmSync(dir, { recursive: true, force: true });
  };
  // Ready when it answers a Binding request; a coturn that exits or never answers fails the test.
  const deadline = Date.now() + 10_000;
  while (!(await stunBinding(port))) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      const output = `${stderr}\n${log()}`;
      await stop();
      throw new Error(`coturn did not start on port ${port} (exit ${proc.exitCode}):\n${output.slice(-2000)}`);
    }
  }
  return { port, url: `turn:127.0.0.1:${port}?transport=udp`, secret, log, stop };
}
