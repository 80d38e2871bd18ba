/**
 * The JSON text of a message's `payload` as the client sent it, so that the event a peer receives can carry
 * it without parsing it into objects and serialising it again: the server never looks into a payload, and
 * most of a message's bytes are its payload (a 4 KB SDP offer). `JSON.stringify` of that object was the
 * largest single cost of relaying an offer.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

/** A line break, which JSON allows as whitespace between tokens and an event may not carry. */
const LINE_BREAK = /[\r\n]/;
/** What a payload's text may have around it, beyond the payload's own length, and be kept as a cut of it. */
const KEPT_SLACK = 256;

const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

function skipSpace(text: string, at: number): number {
  let i = at;
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  return i;
}

/** The index just past the string whose opening quote is at `at`: the next quote not escaped by an odd run of backslashes. */
function stringEnd(text: string, at: number): number {
  let i = at + 1;
  for (;;) {
    const quote = text.indexOf('"', i);
    if (quote < 0) return -1;
    let slashes = 0;
    for (let j = quote - 1; text.charCodeAt(j) === BACKSLASH; j--) slashes++;
    if (slashes % 2 === 0) return quote + 1;
    i = quote + 1;
  }
}

/** The index just past the value that starts at `at` (a string, an object, an array, or a literal). */
function valueEnd(text: string, at: number): number {
  const first = text.charCodeAt(at);
  if (first === QUOTE) return stringEnd(text, at);
  if (first !== OPEN_BRACE && first !== OPEN_BRACKET) {
    let i = at;
    for (let c = text.charCodeAt(i); i < text.length && c !== COMMA && c !== CLOSE_BRACE && c !== CLOSE_BRACKET && !isSpace(c); c = text.charCodeAt(++i));
    return i;
  }
  let depth = 0;
  for (let i = at; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (end < 0) return -1;
      i = end - 1;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
    else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      if (--depth === 0) return i + 1;
    }
  }
  return -1;
}

/**
 * The text of the top-level `payload` member of the object at `from` in `json` (a text that `JSON.parse`
 * accepted: that is what makes a scan for the member's boundaries enough); the last one when the key
 * repeats, as `JSON.parse` takes the last. Undefined when there is none, when a key is written with escapes
 * (a `"p\u0061yload"` is a payload too), when the payload's text holds a line break (whitespace that
 * JSON allows between tokens, and that no event may carry: an SSE frame's data is one line), or when it is
 * not most of `json`: the caller then serialises the parsed value, as it would anyway.
 */
export function payloadSource(json: string, from = 0): string | undefined {
  let i = skipSpace(json, from);
  if (json.charCodeAt(i) !== OPEN_BRACE) return undefined;
  let start = -1;
  let end = -1;
  i = skipSpace(json, i + 1);
  while (json.charCodeAt(i) === QUOTE) {
    const keyEnd = stringEnd(json, i);
    if (keyEnd < 0) return undefined;
    const key = json.slice(i + 1, keyEnd - 1);
    if (key.includes('\\')) return undefined;
    i = skipSpace(json, keyEnd);
    if (json.charCodeAt(i) !== COLON) return undefined;
    const valueStart = skipSpace(json, i + 1);
    const after = valueEnd(json, valueStart);
    if (after < 0) return undefined;
    if (key === 'payload') {
      start = valueStart;
      end = after;
    }
    i = skipSpace(json, after);
    if (json.charCodeAt(i) !== COMMA) break;
    i = skipSpace(json, i + 1);
  }
  if (json.charCodeAt(i) !== CLOSE_BRACE || start < 0) return undefined;
  // A cut of a text keeps all of that text alive for as long as the event that holds it is kept (for
  // resume, after it is written), while the budgets count the event: a payload that is not most of the
  // text (a candidate among the 32 of a batch, or a small payload in a padded body) is serialised again
  // instead, so that what a kept event holds stays within twice what it is counted, and a few hundred bytes.
  if (json.length > 2 * (end - start) + KEPT_SLACK) return undefined;
  const found = json.slice(start, end);
  return LINE_BREAK.test(found) ? undefined : found;
}

/**
 * Where a parsed message keeps the text `payloadSource` found, for `clientEvent`: a symbol, so that no
 * key a client writes in its JSON can ever set it.
 */
export const PAYLOAD_JSON: unique symbol = Symbol('payload JSON');

/** A message that may carry its payload's text as sent. */
export interface WithPayloadJson {
  [PAYLOAD_JSON]?: string;
}

/**
 * The payload text of each message of a batch, a JSON array's text that `JSON.parse` accepted: for each
 * element in order, what `payloadSource` finds in it (undefined for one that has none, or that is not
 * an object). Undefined when `json` is not an array.
 */
export function batchPayloadSources(json: string): (string | undefined)[] | undefined {
  let i = skipSpace(json, 0);
  if (json.charCodeAt(i) !== OPEN_BRACKET) return undefined;
  const sources: (string | undefined)[] = [];
  i = skipSpace(json, i + 1);
  while (i < json.length && json.charCodeAt(i) !== CLOSE_BRACKET) {
    const end = valueEnd(json, i);
    if (end < 0) return undefined;
    sources.push(payloadSource(json, i));
    i = skipSpace(json, end);
    if (json.charCodeAt(i) !== COMMA) break;
    i = skipSpace(json, i + 1);
  }
  return sources;
}
