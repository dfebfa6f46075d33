import http from 'node:http';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { ErrorCode } from '../../errors/index.js';
import type { RepoMeta } from '../../store/types.js';
import { FRAMING_HEADERS, requestFraming } from '../http-proxy/framing.js';
import { isHeaderSafeHost, isSafeReason } from '../http-proxy/upstream-target.js';

/** Services spoken over HTTP, which the absolute-form (plain proxy) mode can forward. */
export const HTTP_SERVICES = new Set(['http', 'https', 'webdav', 'cq5', 'cmis', 'alfresco']);

/** "http" or "https" for an HTTP-based repository; undefined for anything else (or unknown). */
export function httpSchemeOf(meta: RepoMeta | null): 'http' | 'https' | undefined {
  if (!meta?.service || !HTTP_SERVICES.has(meta.service)) return undefined;
  if (meta.service === 'https') return 'https';
  if (meta.service === 'http') return 'http';
  return meta.scheme === 'https' ? 'https' : 'http';
}

/** Hop-by-hop headers (RFC 9110 7.6.1) and the proxy's own; never passed on. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Raw header pairs without hop-by-hop ones and without those the Connection header names. */
export function endToEndHeaders(raw: string[], drop: Iterable<string> = []): Array<[string, string]> {
  const extra = new Set<string>([...drop].map((h) => h.toLowerCase()));
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') {
      for (const t of raw[i + 1]!.split(',')) {
        const tok = t.trim().toLowerCase();
        // Framing headers are never hop-by-hop, whatever a Connection header says.
        if (!FRAMING_HEADERS.has(tok)) extra.add(tok);
      }
    }
  }
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || extra.has(lower)) continue;
    out.push([name, raw[i + 1]!]);
  }
  return out;
}

export interface ForwardHttpOptions {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  /** An open channel to the repository. */
  stream: Duplex;
  /** The origin-form request target ("/path?query"). */
  path: string;
  scheme: 'http' | 'https';
  meta: RepoMeta | null;
  /** `web.grp.acme` (sent on as X-Forwarded-Host). */
  address: string;
  /** Verify the repository's certificate when the gateway speaks TLS to it. */
  verifyTls: boolean;
  /** Called once when the exchange is over. */
  done(r: { bytesIn: number; bytesOut: number; status: number; error?: string }): void;
}

function replyError(
  res: http.ServerResponse,
  status: number,
  message: string,
  code: ErrorCode = 'UPSTREAM_FAILED',
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `${message}\n`;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-tether-error': code,
  });
  res.end(body);
}

/**
 * Sends one proxied request over `stream` in origin form and the answer back to the client.
 * The channel carries this one exchange (`Connection: close` upstream); the client's own
 * connection to the proxy may stay open for more requests. Host becomes the repository's
 * destination host, the name the client used goes on as X-Forwarded-Host.
 */
export function forwardHttp(o: ForwardHttpOptions): void {
  const { req, res, stream, meta } = o;
  // Framing is decided here from what the strict parser read, and set again explicitly upstream.
  const framing = requestFraming(req.rawHeaders, req.httpVersion);
  if (typeof framing === 'string') {
    stream.destroy();
    replyError(res, 400, `malformed request: ${framing}`, 'BAD_FRAMING');
    o.done({ bytesIn: 0, bytesOut: 0, status: 400, error: framing });
    return;
  }
  const rawHost = meta?.host ? (isIP(meta.host) === 6 ? `[${meta.host}]` : meta.host) : undefined;
  const port = meta?.dest_port;
  if (
    (rawHost !== undefined && !isHeaderSafeHost(rawHost)) ||
    (rawHost !== undefined && port != null && (!Number.isInteger(port) || port < 1 || port > 65_535))
  ) {
    stream.destroy();
    replyError(
      res,
      502,
      "the repository's metadata cannot be used (its host or port is not valid)",
      'UPSTREAM_METADATA_INVALID',
    );
    o.done({ bytesIn: 0, bytesOut: 0, status: 502, error: 'invalid repository metadata' });
    return;
  }
  let bytesIn = 0;
  let bytesOut = 0;
  let finished = false;
  const finish = (status: number, error?: string) => {
    if (finished) return;
    finished = true;
    stream.destroy();
    o.done({ bytesIn, bytesOut, status, error });
  };
  stream.on('data', (c: Buffer) => {
    bytesOut += c.length;
  });
  stream.on('error', () => {});

  let socket: Duplex = stream;
  if (o.scheme === 'https') {
    const host = meta?.host ?? undefined;
    socket = tls.connect({
      socket: stream,
      servername: host && isIP(host) === 0 ? host : undefined,
      rejectUnauthorized: o.verifyTls,
      ALPNProtocols: ['http/1.1'],
    });
  }

  const defaultPort = o.scheme === 'https' ? 443 : 80;
  const hostHeader = rawHost ? `${rawHost}${port && port !== defaultPort ? `:${port}` : ''}` : o.address;
  const headers: Array<[string, string]> = endToEndHeaders(req.rawHeaders, [
    'host',
    'content-length',
    'x-forwarded-host',
    'x-forwarded-proto',
  ]);
  const forwardedFor = req.headers['x-forwarded-for'];
  const client = req.socket.remoteAddress ?? '';
  const flat: string[] = [];
  for (const [k, v] of headers) {
    if (k.toLowerCase() === 'x-forwarded-for') continue;
    flat.push(k, v);
  }
  flat.push(
    'Host',
    hostHeader,
    'X-Forwarded-For',
    forwardedFor
      ? `${Array.isArray(forwardedFor) ? forwardedFor.join(', ') : forwardedFor}, ${client}`
      : client,
    'X-Forwarded-Host',
    o.address,
    'X-Forwarded-Proto',
    'http',
    'Via',
    `${req.httpVersion} tether`,
    'Connection',
    'close',
  );
  if (framing.kind === 'chunked') flat.push('Transfer-Encoding', 'chunked');
  else if (framing.kind === 'length') flat.push('Content-Length', String(framing.length));

  const up = http.request({
    method: req.method,
    path: o.path,
    headers: flat,
    setHost: false,
    createConnection: () => socket as unknown as import('node:net').Socket,
  });
  up.on('response', (ur) => {
    const status = ur.statusCode ?? 0;
    const out = endToEndHeaders(ur.rawHeaders);
    out.push(['Via', `${ur.httpVersion} tether`]);
    let problem: string | undefined;
    if (status < 200 || status > 599) problem = `status ${status}`;
    else if (!isSafeReason(ur.statusMessage)) problem = 'a control character in its reason phrase';
    else {
      try {
        res.writeHead(status, ur.statusMessage, out.flat());
      } catch (err) {
        problem = (err as Error).message;
      }
    }
    if (problem !== undefined) {
      up.destroy();
      replyError(res, 502, 'the repository sent a malformed response', 'UPSTREAM_BAD_RESPONSE');
      finish(502, `malformed response: ${problem}`);
      return;
    }
    ur.on('error', () => res.destroy());
    ur.pipe(res);
    res.on('finish', () => finish(ur.statusCode ?? 502));
  });
  up.on('error', (err: NodeJS.ErrnoException) => {
    const tlsProblem =
      typeof err.code === 'string' &&
      (/CERT|SELF_SIGNED|TLS|SSL|HOSTNAME|ERR_TLS/.test(err.code) || err.message.includes('certificate'));
    const message = tlsProblem
      ? `the repository's TLS certificate was not accepted (${err.code})`
      : 'the repository closed the connection without a complete answer';
    replyError(res, 502, message);
    finish(502, err.code ?? err.message);
  });
  res.on('close', () => {
    if (!res.writableFinished) {
      up.destroy();
      finish(res.statusCode, 'client went away');
    }
  });
  req.on('data', (c: Buffer) => {
    bytesIn += c.length;
  });
  req.once('aborted', () => up.destroy());
  if (framing.kind === 'none') up.end();
  else req.pipe(up);
}
