/** A WebSocket client for the /ws transport, over Bun's WebSocket (the browser's API). */

export type Frame = Record<string, unknown>;

export interface WsConnection {
  readonly socket: WebSocket;
  /** Every frame received so far, parsed. */
  readonly frames: Frame[];
  /** Event frames only (they have a `type`; acks have `ack`). */
  readonly events: Frame[];
  /** The id of the last event frame seen: what a client resumes from. */
  readonly lastEventId: number | undefined;
  /** Resolves with the first event (from the start) that matches and was not taken before. */
  next(match?: (e: Frame) => boolean, timeoutMs?: number): Promise<Frame>;
  /** Sends a frame with a fresh `id` and resolves with its ack. */
  request(frame: Frame, timeoutMs?: number): Promise<Frame>;
  send(data: string | Uint8Array<ArrayBuffer>): void;
  /** Resolves with the close code and reason once the connection has closed. */
  readonly closed: Promise<{ code: number; reason: string }>;
  close(code?: number): void;
}

let nextId = 1;

/** Opens `url` (http:// or ws://) and resolves once it is open, or rejects if it closes first. */
export async function openSocket(url: string): Promise<WsConnection> {
  const socket = new WebSocket(url.replace(/^http/, 'ws'));
  const frames: Frame[] = [];
  const taken = new Set<Frame>();
  const waiters: (() => void)[] = [];
  let lastEventId: number | undefined;
  let done = false;
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  socket.onmessage = (e) => {
    const frame = JSON.parse(String(e.data)) as Frame;
    frames.push(frame);
    if (typeof frame.id === 'number' && 'type' in frame) lastEventId = frame.id;
    wake();
  };
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.onclose = (e) => {
      done = true;
      wake();
      resolve({ code: e.code, reason: e.reason });
    };
  });
  await new Promise<void>((resolve, reject) => {
    socket.onopen = () => resolve();
    void closed.then(({ code }) => reject(new Error(`closed before open: ${code}`)));
  });

  const wait = async <T>(find: () => T | undefined, timeoutMs: number, what: string): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = find();
      if (found !== undefined) return found;
      if (done) throw new Error(`socket closed without ${what}; got ${JSON.stringify(frames)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs} ms; got ${JSON.stringify(frames)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  };

  return {
    socket,
    frames,
    get events() {
      return frames.filter((f) => 'type' in f);
    },
    get lastEventId() {
      return lastEventId;
    },
    closed,
    send: (data) => socket.send(data),
    close: (code = 1000) => socket.close(code),
    next(match = () => true, timeoutMs = 5000) {
      return wait(
        () => {
          const found = frames.find((f) => 'type' in f && !taken.has(f) && match(f));
          if (found) taken.add(found);
          return found;
        },
        timeoutMs,
        'matching event',
      );
    },
    request(frame, timeoutMs = 5000) {
      const id = nextId++;
      socket.send(JSON.stringify({ ...frame, id }));
      return wait(() => frames.find((f) => f.ack === id), timeoutMs, `ack ${id}`);
    },
  };
}

/** Matches events of one type, optionally from one sender. */
export const isType = (type: string, senderId?: string) => (e: Frame) => e.type === type && (senderId === undefined || e.senderId === senderId);
