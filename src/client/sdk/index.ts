// switchboard's client library, served by the server as /sdk/switchboard.js (ESM) with its types at
// /sdk/switchboard.d.ts, and the package entry `switchboard/client`. Its names and shapes: switchboard.d.ts.
import { version as packageVersion } from '../../../package.json';
import { SignalChannel } from './signalling';
import type { Signalling, SignallingOptions } from './switchboard';

export { describeError, join } from './session';
export { ApiError, UnreachableError } from './signalling';
export type * from './switchboard';

/** The version of the server this library was built with. */
export const version: string = packageVersion;

/** The server's own peer in relay sessions. */
export { SERVER_PEER } from './session';

/** Registration and event stream only, no media. */
export function connect(options: SignallingOptions): Signalling {
  return new SignalChannel(options);
}
