// Fails the type check (`tsc --noEmit`, run in CI) when the published declarations, switchboard.d.ts,
// and what index.ts exports disagree in either direction: a name missing, a signature changed.
import type * as Built from './index';
import type * as Declared from './switchboard';

type Mutual<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

export const declarationsMatchTheCode: Mutual<typeof Declared, typeof Built> = true;
