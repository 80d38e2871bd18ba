import { readFileSync } from 'node:fs';

/** One file of the built client page, ready to serve. */
export interface Asset {
  body: Uint8Array<ArrayBuffer>;
  contentType: string;
  etag: string;
  /** The HTML page itself (revalidated on every load); the rest have content-hashed names. */
  isPage: boolean;
}

/** `import page from './index.html'`: in an executable, Bun's manifest of the built files; otherwise the source path. */
export interface HtmlImport {
  index: string;
  files?: { path: string; loader: string; headers: { etag: string; 'content-type': string } }[];
}

/**
 * A page's files by URL path (`at` for the page, `/chunk-….js` for the rest). Serving them
 * ourselves, rather than handing Bun the HTML import as a native route, is what lets every response
 * carry our security headers: Bun's HTML routes take no headers. In an executable the files are the
 * ones `bun build --compile` embedded; from source, Bun's bundler builds them once, in memory.
 */
export async function loadClientBundle(page: HtmlImport, at = '/'): Promise<Map<string, Asset>> {
  const assets = new Map<string, Asset>();
  if (page.files) {
    for (const file of page.files) {
      const isPage = file.path === page.index;
      const body = new Uint8Array(readFileSync(file.path));
      assets.set(isPage ? at : `/${basename(file.path)}`, { body, contentType: file.headers['content-type'], etag: `"${file.headers.etag}"`, isPage });
    }
    return assets;
  }
  const built = await Bun.build({ entrypoints: [page.index], target: 'browser', minify: true });
  if (!built.success) throw new AggregateError(built.logs, 'the client page does not build');
  for (const output of built.outputs) {
    const isPage = output.path.endsWith('.html');
    const body = new Uint8Array(await output.arrayBuffer());
    const etag = `"${output.hash ?? Bun.hash(body).toString(36)}"`;
    assets.set(isPage ? at : `/${basename(output.path)}`, { body, contentType: output.type, etag, isPage });
  }
  return assets;
}

const basename = (path: string) => path.slice(path.lastIndexOf('/') + 1);
