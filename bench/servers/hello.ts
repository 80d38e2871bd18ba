// The floor of any HTTP server on Bun: a bare Bun.serve answering every request with a small text body,
// without reading it (Bun still parses each request off the socket). The SSE relay benchmark sends it the
// same POSTs as switchboard, to put switchboard's relay rate beside what Bun.serve does at the least.
import { serving } from './serving';

const server = Bun.serve({
  port: 0,
  hostname: '127.0.0.1',
  development: false,
  fetch: () => new Response('hello'),
});
await serving(server.port);
