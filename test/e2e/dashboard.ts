// A dashboard on another origin than the server, as a customer's would be: its page imports the client
// library from the server (`<server>/sdk/switchboard.js`) and leaves it on `window.sb` for the test to drive.
import type { Page } from 'playwright-core';

export interface Dashboard {
  /** The page that imports the library from `server`. */
  pageUrl(server: string): string;
  stop(): Promise<void>;
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>dashboard</title></head>
<body><video id="remote" autoplay playsinline muted></video>
<script type="module">
  const server = new URLSearchParams(location.search).get('server');
  try {
    window.sb = await import(server + '/sdk/switchboard.js');
  } catch (e) {
    window.sbError = String(e);
  }
</script></body></html>`;

export function startDashboard(): Dashboard {
  const server = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: () => new Response(PAGE, { headers: { 'content-type': 'text/html; charset=utf-8' } }) });
  return {
    pageUrl: (api) => `http://127.0.0.1:${server.port}/?server=${encodeURIComponent(api)}`,
    stop: () => server.stop(true),
  };
}

/** Waits until the page imported the library (or says why it could not). */
export async function libraryLoaded(page: Page): Promise<void> {
  await page.waitForFunction(() => 'sb' in window || 'sbError' in window, undefined, { timeout: 15_000, polling: 50 });
  const error = await page.evaluate(() => (window as unknown as { sbError?: string }).sbError);
  if (error) throw new Error(`the library did not load: ${error}`);
}
