import type { EventMembers } from '../delivery/delivery';

/**
 * Server-Sent Events framing. Ids are integers and an event's data is its JSON object's text, which holds
 * no line break (`EventMembers`), so a frame is always one `id:` line and one `data:` line: a client's
 * text can never start a line of its own. The frame is the event's one copy: its members are not read here.
 */
export const eventFrame = (id: number, members: EventMembers): string => `id: ${id}\ndata: {${members}\n\n`;

/** Sets the client's reconnection delay; dispatches no event. */
export const retryFrame = (ms: number) => `retry: ${ms}\n\n`;

/** Moves the client's Last-Event-ID without dispatching an event (a block without data is not one). */
export const idFrame = (id: number) => `id: ${id}\n\n`;
