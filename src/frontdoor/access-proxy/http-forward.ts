import http from 'node:http';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { RepoMeta } from '../../store/types.js';

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
      for (const t of raw[i + 1]!.split(',')) extra.add(t.trim().toLowerCase());
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

function replyError(res: http.ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `${message}\n`;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-tether-error': 'UPSTREAM_FAILED',
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
  const hostHeader = meta?.host
    ? `${isIP(meta.host) === 6 ? `[${meta.host}]` : meta.host}${meta.dest_port && meta.dest_port !== defaultPort ? `:${meta.dest_port}` : ''}`
    : o.address;
  const headers: Array<[string, string]> = endToEndHeaders(req.rawHeaders, [
    'host',
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

  const up = http.request({
    method: req.method,
    path: o.path,
    headers: flat,
    setHost: false,
    createConnection: () => socket as unknown as import('node:net').Socket,
  });
  up.on('response', (ur) => {
    const out = endToEndHeaders(ur.rawHeaders);
    out.push(['Via', `${ur.httpVersion} tether`]);
    res.writeHead(ur.statusCode ?? 502, ur.statusMessage, out.flat());
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
  req.pipe(up);
}
