/**
 * Request framing: how long a caller's request body is, decided once, here, from what Node's
 * strict parser (llhttp) parsed, and set again explicitly on the upstream request. Node's parser
 * already refuses Content-Length together with Transfer-Encoding, duplicate or malformed
 * Content-Length, obs-fold, bare LF and unknown transfer codings; this file refuses the rest of
 * what two parsers could read two ways (request smuggling): a Connection header that names a
 * framing header (it would turn Content-Length into a hop-by-hop header and leave the body
 * unframed upstream), any transfer coding but a single "chunked", and chunked bodies on HTTP/1.0.
 */

/** How the request body is framed, as the front door sends it upstream. */
export type Framing = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' };

/** Headers a Connection header may never name: removing them would unframe the message or re-route it. */
export const FRAMING_HEADERS: ReadonlySet<string> = new Set(['content-length', 'transfer-encoding', 'host']);

/** The header names a Connection header value lists (lower case). */
export function connectionTokens(value: string): string[] {
  const out: string[] = [];
  for (const t of value.split(',')) {
    const tok = t.trim().toLowerCase();
    if (tok) out.push(tok);
  }
  return out;
}

/**
 * The framing of a parsed request, or the reason the front door refuses it (400). `rawHeaders`
 * is Node's flat [name, value, …] list; `httpVersion` is "1.0" or "1.1".
 */
export function requestFraming(rawHeaders: readonly string[], httpVersion: string): Framing | string {
  let te: string | undefined;
  let teCount = 0;
  let cl: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const k = rawHeaders[i]!.toLowerCase();
    const v = rawHeaders[i + 1]!;
    if (k === 'connection' || k === 'proxy-connection') {
      const named = connectionTokens(v).find((t) => FRAMING_HEADERS.has(t));
      if (named)
        return `the ${rawHeaders[i]} header may not name ${named} (framing headers are not hop-by-hop)`;
    } else if (k === 'transfer-encoding') {
      te = v;
      teCount++;
    } else if (k === 'content-length') {
      if (cl !== undefined) return 'more than one Content-Length header';
      cl = v;
    }
  }
  if (teCount > 0) {
    if (cl !== undefined) return 'Content-Length together with Transfer-Encoding';
    if (teCount > 1 || (te ?? '').trim().toLowerCase() !== 'chunked')
      return 'the only transfer coding accepted is a single "Transfer-Encoding: chunked"';
    if (httpVersion !== '1.1') return 'Transfer-Encoding is not allowed on HTTP/1.0 requests';
    return { kind: 'chunked' };
  }
  if (cl === undefined) return { kind: 'none' };
  const t = cl.trim();
  if (!/^\d{1,15}$/.test(t)) return 'Content-Length must be a decimal number';
  const length = Number(t);
  return length === 0 ? { kind: 'none' } : { kind: 'length', length };
}

/** True when the request carries a body. */
export function hasBody(f: Framing): boolean {
  return f.kind !== 'none';
}
