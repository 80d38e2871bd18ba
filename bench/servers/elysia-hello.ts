// The floor of the fixed stack: Elysia with the two plugins switchboard uses (@elysiajs/cors,
// @elysiajs/openapi) and one JSON route, nothing of switchboard's own. Compiled as the executable is,
// its idle memory is what any server on this stack holds before its own code (bench/binary.ts).
import { cors } from '@elysiajs/cors';
import { openapi } from '@elysiajs/openapi';
import { Elysia } from 'elysia';
import { serving } from './serving';

const app = new Elysia()
  .use(cors())
  .use(openapi())
  .get('/', () => ({ status: 'ok' }))
  .listen({ port: 0, hostname: '127.0.0.1', development: false });
await serving(app.server?.port);
