import type http from 'node:http';
import type { TetherError } from '../errors/index.js';

/** Small HTML pages of the sign-in flow (refusals, failures): every text escaped, no script. */

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESC[c]!);
}

const HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy':
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

/** A page for `err`: its status, its message as the first paragraph, its code for the log search. */
export function sendPage(
  res: http.ServerResponse,
  err: TetherError,
  title: string,
  more: string[] = [],
  headers: http.OutgoingHttpHeaders = {},
  action: { href: string; text: string } = { href: '/', text: 'Back to the dashboard' },
): void {
  const status = err.status;
  const paragraphs = [err.message, ...more];
  const body = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <meta name="referrer" content="no-referrer" />
    <title>${escapeHtml(title)} · Tether gateway</title>
    <link rel="stylesheet" href="/dashboard/styles.css" />
  </head>
  <body>
    <main class="signin-page">
      <section class="signin card" data-code="${escapeHtml(err.code)}">
        <h1><span class="logo" aria-hidden="true"></span>${escapeHtml(title)}</h1>
${paragraphs.map((p) => `        <p role="alert">${escapeHtml(p)}</p>`).join('\n')}
        <p class="muted small">Error code: <code>${escapeHtml(err.code)}</code></p>
        <p><a class="button primary" href="${escapeHtml(action.href)}">${escapeHtml(action.text)}</a></p>
      </section>
    </main>
  </body>
</html>
`;
  res.writeHead(status, { ...HEADERS, ...headers });
  res.end(body);
}
