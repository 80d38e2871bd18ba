import type { Batched } from '../delivery/write-batcher';
import type { SenderReply, SendReply } from './scripts';

/** At most this many messages in one call of the send script: Redis runs nothing else while it runs. */
export const MAX_MESSAGES_PER_CALL = 32;

/** One sender's group of the send script's arguments (see SEND in scripts.ts) and who waits for its part. */
interface Queued {
  group: string[];
  messages: number;
  resolve(reply: SenderReply): void;
  reject(error: unknown): void;
}

export interface SendQueueDeps {
  /** Holds the queue for this turn of the loop: it is flushed with the turn's commands, or before any other. */
  hold(queue: Batched): void;
  /** Runs the send script for these groups (its other arguments are the caller's). */
  call(groups: string[]): Promise<SendReply>;
  /** The frames the script returned for this instance: applied once per call, before any sender hears. */
  apply(out: string[]): void;
}

/**
 * The senders of one turn of the loop, in one call of the send script: each call costs Redis and the
 * instance a fixed part besides its messages' (the call's parsing, its arguments, the reply), and the
 * requests of a turn are many senders', one message each. Each sender's part is taken as if it had
 * called alone, in order; a call that fails fails each of its senders with its error.
 */
export class SendQueue implements Batched {
  private queued: Queued[] = [];

  constructor(private readonly deps: SendQueueDeps) {}

  /** `group`: the sender's arguments, `messages` of them (at most MAX_MESSAGES_PER_CALL). */
  send(group: string[], messages: number): Promise<SenderReply> {
    return new Promise((resolve, reject) => {
      this.queued.push({ group, messages, resolve, reject });
      if (this.queued.length === 1) this.deps.hold(this);
    });
  }

  flush(): void {
    const queued = this.queued;
    this.queued = [];
    let from = 0;
    while (from < queued.length) {
      let to = from;
      let messages = 0;
      while (to < queued.length && (to === from || messages + (queued[to] as Queued).messages <= MAX_MESSAGES_PER_CALL)) {
        messages += (queued[to] as Queued).messages;
        to++;
      }
      this.call(queued.slice(from, to));
      from = to;
    }
  }

  private call(senders: Queued[]): void {
    const fail = (error: unknown) => {
      for (const sender of senders) sender.reject(error);
    };
    this.deps
      .call(senders.flatMap((s) => s.group))
      .then((reply) => {
        if (reply.senders.length !== senders.length) throw new Error(`send: the script answered for ${reply.senders.length} senders of ${senders.length}`);
        this.deps.apply(reply.out);
        senders.forEach((sender, i) => {
          sender.resolve(reply.senders[i] as SenderReply);
        });
      })
      .catch(fail);
  }
}
