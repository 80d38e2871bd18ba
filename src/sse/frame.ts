/**
 * Server-Sent Events framing. Ids are integers and event data is JSON text, so a frame can never
 * carry a line a client did not send; `data` with line breaks is still split into one `data:` line
 * per line, as the format requires, rather than trusted.
 */
const LINE_BREAK = /\r\n|\r|\n/;

export function eventFrame(id: number, data: string): string {
  const body = LINE_BREAK.test(data) ? data.split(LINE_BREAK).join('\ndata: ') : data;
  return `id: ${id}\ndata: ${body}\n\n`;
}

/** Sets the client's reconnection delay; dispatches no event. */
export const retryFrame = (ms: number) => `retry: ${ms}\n\n`;

/** Moves the client's Last-Event-ID without dispatching an event (a block without data is not one). */
export const idFrame = (id: number) => `id: ${id}\n\n`;
