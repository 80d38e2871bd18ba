/** A sink whose writes wait for the batch: `flush` gives them to its socket. */
export interface Batched {
  flush(): void;
}

/**
 * Gives what sinks were given during one turn of the event loop to their sockets together, each sink's
 * frames in one write: a sender's window of messages reaches its target in one write rather than one
 * write each. A frame waits at most until the loop comes round (`setImmediate`), after the I/O it is
 * answering, so that it is never written from inside another request: a write to one socket while Bun
 * answers a request on another takes that request's cork, and its answer then goes out a header at a
 * time, one system call each.
 */
export class WriteBatcher {
  private dirty: Batched[] = [];
  private scheduled = false;

  /** @param failed told of a sink whose flush threw (a bug): the other sinks of the batch are flushed all the same. */
  constructor(private readonly failed: (error: unknown) => void = () => {}) {}

  add(sink: Batched): void {
    this.dirty.push(sink);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.run);
  }

  private readonly run = (): void => {
    this.scheduled = false;
    const sinks = this.dirty;
    this.dirty = [];
    for (const sink of sinks) {
      try {
        sink.flush();
      } catch (error) {
        this.failed(error);
      }
    }
  };
}
