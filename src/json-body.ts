import { SignalError } from './errors';

/** The largest request body accepted, as the API promises. */
export const MAX_BODY_BYTES = 64 * 1024;

const tooLarge = () => new SignalError('payload_too_large', `the body is over ${MAX_BODY_BYTES} bytes`);

/** A body that ends before it is whole (its client went away, or the server is closing it) is refused, not a failure of the server. */
const unreadable = (e: unknown) => new SignalError('invalid_json', `the body could not be read: ${(e as Error).message}`);

/**
 * Reads a request body as JSON whatever its content type (a seed client posting with plain `fetch`
 * sends text/plain), refusing more than `limit` bytes without reading them when the length is declared.
 * An empty body is refused, unless `whenEmpty` says what it stands for.
 */
export async function readJsonBody(request: Request, limit = MAX_BODY_BYTES, whenEmpty?: unknown): Promise<unknown> {
  return parseJsonBody(await readTextBody(request, limit), whenEmpty);
}

/** A body's text as JSON; an empty body is refused, unless `whenEmpty` says what it stands for. */
export function parseJsonBody(text: string, whenEmpty?: unknown): unknown {
  if (text.trim() === '') {
    if (whenEmpty !== undefined) return whenEmpty;
    throw new SignalError('invalid_json', 'the body is empty; expected a JSON object');
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SignalError('invalid_json', `the body is not valid JSON: ${(e as Error).message}`);
  }
}

/** Reads a request body as text, refusing more than `limit` bytes (without reading them when the length is declared). */
export async function readTextBody(request: Request, limit = MAX_BODY_BYTES): Promise<string> {
  const declared = request.headers.get('content-length');
  if (declared !== null && Number(declared) > limit) throw tooLarge();
  const text = declared !== null ? await bodyText(request) : await readChunked(request, limit);
  if (text.length > limit) throw tooLarge();
  return text;
}

async function bodyText(request: Request): Promise<string> {
  try {
    return await request.text();
  } catch (e) {
    throw unreadable(e);
  }
}

/** A body without Content-Length is read chunk by chunk and abandoned as soon as it passes the limit. */
async function readChunked(request: Request, limit: number): Promise<string> {
  if (!request.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for await (const chunk of request.body as unknown as AsyncIterable<Uint8Array>) {
      size += chunk.byteLength;
      if (size > limit) throw tooLarge();
      chunks.push(chunk);
    }
  } catch (e) {
    throw e instanceof SignalError ? e : unreadable(e);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}
