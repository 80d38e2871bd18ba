// The viewer's files travel inside the executable: `bun build --compile` embeds what is imported
// `with { type: 'file' }`. Nothing of /docs comes from another origin.

import stylesheetPath from 'swagger-ui-dist/swagger-ui.css' with { type: 'file' };
import bundlePath from 'swagger-ui-dist/swagger-ui-bundle.js' with { type: 'file' };

/** Where the page's own files are served. */
export const DOCS_ASSETS = '/docs/assets';
/** Every file served there. */
export const DOCS_ASSET_NAMES = ['swagger-ui-bundle.js', 'swagger-ui.css', 'start.js'] as const;
type DocsAssetName = (typeof DOCS_ASSET_NAMES)[number];

/**
 * The Content-Security-Policy of /docs: scripts, styles and fonts from this origin only, no inline
 * code, requests ("Try it out") to this origin only. Swagger UI's stylesheet draws its icons from data:
 * URLs.
 */
export const DOCS_CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** On the page and on each of its files. */
export const DOCS_HEADERS = {
  'content-security-policy': DOCS_CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

/** Starts Swagger UI on the document; a file of its own, since the policy allows no inline script. */
const START = (documentPath: string) => `window.ui = SwaggerUIBundle({
  url: ${JSON.stringify(documentPath)},
  dom_id: '#swagger-ui',
  deepLinking: true,
  // Swagger UI would otherwise send the document to a validator on the web for a badge.
  validatorUrl: null,
});
`;

/** The documentation page: Swagger UI (swagger-ui-dist), from this server, reading the document. */
export const docsPage = (_documentPath: string) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>switchboard API</title>
<link rel="stylesheet" href="${DOCS_ASSETS}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="${DOCS_ASSETS}/swagger-ui-bundle.js"></script>
<script src="${DOCS_ASSETS}/start.js"></script>
</body>
</html>
`;

export interface DocsAsset {
  body: Uint8Array<ArrayBuffer> | string;
  contentType: string;
  etag: string;
}

/**
 * The page's files by name. The viewer's two are read on first use (2 MB that a server whose docs
 * nobody opens never loads), then kept.
 */
export function docsAssets(documentPath: string): (name: string) => Promise<DocsAsset | undefined> {
  const start = START(documentPath);
  const files: Record<DocsAssetName, () => Promise<DocsAsset>> = {
    'swagger-ui-bundle.js': once(() => fileAsset(bundlePath, 'text/javascript; charset=utf-8')),
    'swagger-ui.css': once(() => fileAsset(stylesheetPath, 'text/css; charset=utf-8')),
    'start.js': async () => ({ body: start, contentType: 'text/javascript; charset=utf-8', etag: `"${Bun.hash(start).toString(36)}"` }),
  };
  return async (name) => (Object.hasOwn(files, name) ? files[name as DocsAssetName]() : undefined);
}

async function fileAsset(path: string, contentType: string): Promise<DocsAsset> {
  const body = new Uint8Array(await Bun.file(path).arrayBuffer());
  return { body, contentType, etag: `"${Bun.hash(body).toString(36)}"` };
}

function once<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => {
    made ??= make();
    return made;
  };
}
