/**
 * How the connector reaches the gateway: plain TCP (the SSH port), TLS (`tls://host:port`) or a
 * WebSocket over HTTPS (`wss://host/path`), directly or through an HTTP proxy (HTTP CONNECT,
 * Basic credentials). The SSH session runs unchanged inside whichever stream this opens.
 *
 * The gateway's TLS certificate is always checked (against `gateway_ca`, else the system's CA
 * store) unless `insecure_skip_verify: true`, which is logged on every connection. A refused
 * certificate, a proxy's refusal and a WebSocket path that does not exist each give their own
 * message, which `tether connector status` shows as the last error.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { createWebSocketStream, WebSocket } from 'ws';
import {
  type ConnectConfig,
  gatewayText,
  type ProxySetting,
  parseProxyUrl,
  proxyText,
} from '../config/connect.js';
import { destinationOf } from '../config/uri.js';
import { type ErrorCode, TetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { coalesceWrites } from '../tunnel/pipe.js';

export type TransportConfig = Pick<ConnectConfig, 'gateway' | 'transport' | 'file'>;

/** The way to the gateway, for `status`, `ping` and the log. */
export interface GatewayRoute {
  transport: 'ssh' | 'tls' | 'wss';
  /** "tls://gw.example.com:443" */
  gateway: string;
  /** "http://proxy:3128 (user alice) from HTTPS_PROXY", or null when direct. */
  proxy: string | null;
  /** tls/wss: how the certificate is checked; null on plain SSH. */
  certificate: 'gateway_ca' | 'system CAs' | 'NOT CHECKED' | null;
  /** One line: "wss://gw/tunnel via proxy http://p:3128 from HTTPS_PROXY, certificate checked against gateway_ca". */
  text: string;
}

export interface GatewayTransport {
  route: GatewayRoute;
  /** Opens the stream the SSH session runs on; undefined: plain TCP, dialed by the SSH client. */
  dial: ((timeoutMs: number) => Promise<Duplex>) | undefined;
}

export interface TransportOptions {
  env?: NodeJS.ProcessEnv;
  log?: Logger;
}

function fail(code: ErrorCode, message: string, status = 502, cause?: unknown): TetherError {
  return new TetherError(code, message, { status, retryable: true, cause });
}

function authority(host: string, port: number): string {
  return destinationOf({ host, port });
}

// ---------------------------------------------------------------------------------------------
// Proxy selection: `proxy:` in connect.yaml, else https_proxy / HTTPS_PROXY unless NO_PROXY says no.

function envValue(env: NodeJS.ProcessEnv, ...names: string[]): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name]?.trim();
    if (value) return { name, value };
  }
  return undefined;
}

/**
 * Whether NO_PROXY exempts host:port. Entries (comma or space separated): "*", a domain
 * ("example.com" and ".example.com" both cover its subdomains), an IP address, a CIDR block,
 * each optionally with ":port".
 */
export function noProxyMatches(list: string | undefined, host: string, port: number): boolean {
  if (!list) return false;
  const h = host.toLowerCase().replace(/\.$/, '');
  for (const raw of list.split(/[\s,]+/)) {
    let entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return true;
    let entryPort: number | undefined;
    const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
    if (v6) {
      entry = v6[1]!;
      entryPort = v6[2] ? Number(v6[2]) : undefined;
    } else {
      const hp = /^([^:]+):(\d+)$/.exec(entry);
      if (hp) {
        entry = hp[1]!;
        entryPort = Number(hp[2]);
      }
    }
    if (entryPort !== undefined && entryPort !== port) continue;
    if (entry.includes('/')) {
      const [net0, bits] = entry.split('/');
      const family = net.isIP(net0 ?? '');
      if (family === 0 || net.isIP(h) !== family) continue;
      const block = new net.BlockList();
      try {
        block.addSubnet(net0!, Number(bits), family === 6 ? 'ipv6' : 'ipv4');
      } catch {
        continue;
      }
      if (block.check(h, family === 6 ? 'ipv6' : 'ipv4')) return true;
      continue;
    }
    if (net.isIP(entry)) {
      if (entry === h) return true;
      continue;
    }
    const domain = entry.replace(/^\*?\./, '');
    if (h === domain || h.endsWith(`.${domain}`)) return true;
  }
  return false;
}

/**
 * The proxy to use, if any. `proxy:` in connect.yaml applies to every transport; the
 * environment (https_proxy, HTTPS_PROXY; NO_PROXY, no_proxy) only to tls:// and wss://, so a
 * plain SSH gateway keeps working on a machine whose shell sets a proxy for the web.
 */
export function proxyFor(cfg: TransportConfig, env: NodeJS.ProcessEnv): ProxySetting | undefined {
  if (cfg.transport.proxy) return cfg.transport.proxy;
  if (cfg.transport.kind === 'ssh') return undefined;
  const p = envValue(env, 'https_proxy', 'HTTPS_PROXY');
  if (!p) return undefined;
  const noProxy = envValue(env, 'no_proxy', 'NO_PROXY');
  if (noProxyMatches(noProxy?.value, cfg.gateway.host, cfg.gateway.port)) return undefined;
  const parsed = parseProxyUrl(p.value, p.name);
  if (typeof parsed === 'string') {
    throw new TetherError('PROXY_INVALID', `${p.name}: ${parsed}`, { status: 400 });
  }
  return parsed;
}

function proxyLabel(p: ProxySetting): string {
  return `${proxyText(p)} from ${p.source}`;
}

// ---------------------------------------------------------------------------------------------
// The pieces of a dial. Each gets the time left and says which step failed.

function tcpConnect(host: string, port: number, timeoutMs: number, what: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 30_000 });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(fail('GATEWAY_UNREACHABLE', `cannot reach ${what}: no connection within ${timeoutMs} ms`, 504));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(fail('GATEWAY_UNREACHABLE', `cannot reach ${what}: ${e.message}`, 503, e));
    });
  });
}

/** Opens a tunnel to host:port through an HTTP proxy (HTTP CONNECT, optional Basic credentials). */
export function connectViaProxy(
  p: ProxySetting,
  host: string,
  port: number,
  timeoutMs: number,
): Promise<net.Socket> {
  const target = authority(host, port);
  const label = proxyLabel(p);
  return new Promise((resolve, reject) => {
    let settled = false;
    let connected = false;
    const done = (err: TetherError | undefined, sock?: net.Socket) => {
      if (settled) {
        sock?.destroy();
        return;
      }
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(sock!);
    };
    const headers: Record<string, string> = { Host: target };
    if (p.username !== undefined) {
      headers['Proxy-Authorization'] =
        `Basic ${Buffer.from(`${p.username}:${p.password ?? ''}`).toString('base64')}`;
    }
    const req = http.request({
      host: p.host,
      port: p.port,
      method: 'CONNECT',
      path: target,
      headers,
      agent: false,
      setHost: false,
    });
    const timer = setTimeout(() => {
      req.destroy();
      done(
        connected
          ? fail(
              'PROXY_TIMEOUT',
              `the proxy ${label} did not answer CONNECT ${target} within ${timeoutMs} ms`,
              504,
            )
          : fail(
              'PROXY_TIMEOUT',
              `cannot reach the proxy ${label}: no connection within ${timeoutMs} ms`,
              504,
            ),
      );
    }, timeoutMs);
    req.once('socket', (s: net.Socket) => {
      s.setNoDelay(true);
      s.once('connect', () => {
        connected = true;
      });
    });
    req.once('connect', (res: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) {
        socket.setKeepAlive(true, 30_000);
        if (head.length > 0) socket.unshift(head);
        done(undefined, socket);
        return;
      }
      socket.destroy();
      done(proxyRefusal(p, label, target, status, res.statusMessage ?? '', res.headers));
    });
    req.once('response', (res: http.IncomingMessage) => {
      // Some proxies answer a refused CONNECT as a plain response.
      res.resume();
      done(proxyRefusal(p, label, target, res.statusCode ?? 0, res.statusMessage ?? '', res.headers));
      req.destroy();
    });
    req.once('error', (e: NodeJS.ErrnoException) => {
      done(
        connected
          ? fail(
              'PROXY_FAILED',
              `the proxy ${label} closed the connection without answering CONNECT ${target} (${e.message})`,
            )
          : fail('PROXY_UNREACHABLE', `cannot reach the proxy ${label}: ${e.message}`, 503, e),
      );
    });
    req.end();
  });
}

function proxyRefusal(
  p: ProxySetting,
  label: string,
  target: string,
  status: number,
  reason: string,
  headers: http.IncomingHttpHeaders,
): TetherError {
  const answer = `HTTP ${status}${reason ? ` ${reason}` : ''}`;
  // 407 is the standard answer; some proxies (tinyproxy) answer wrong credentials with 401.
  if (status === 407 || (status === 401 && p.username !== undefined)) {
    const challenge = headers['proxy-authenticate'];
    const wants = challenge ? `; it asks for ${String(challenge).slice(0, 100)}` : '';
    return fail(
      'PROXY_AUTH_REQUIRED',
      p.username !== undefined
        ? `the proxy ${label} refused the credentials of user "${p.username}" (${answer}${wants})`
        : `the proxy ${label} requires credentials (${answer}${wants}): give them in connect.yaml ` +
            '(proxy: { url, username, password }) or in the proxy URL (http://user:password@host:port)',
      407,
    );
  }
  if (status === 403) {
    return fail(
      'PROXY_FORBIDDEN',
      `the proxy ${label} refused CONNECT to ${target} (${answer}): its rules do not allow this destination or port`,
      403,
    );
  }
  if (status === 502 || status === 503 || status === 504) {
    return fail('PROXY_UPSTREAM_FAILED', `the proxy ${label} could not reach ${target} (${answer})`, status);
  }
  return fail('PROXY_REFUSED', `the proxy ${label} answered CONNECT ${target} with ${answer}`);
}

const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
]);

function names(cert: tls.PeerCertificate | undefined): string {
  if (!cert) return 'unknown';
  const san = cert.subjectaltname?.replace(/IP Address:/g, 'IP:');
  return san || (cert.subject?.CN ? `CN=${cert.subject.CN}` : 'no names');
}

function dn(x: tls.Certificate | undefined): string {
  if (!x) return '?';
  return x.CN ? `CN=${x.CN}` : x.O ? `O=${x.O}` : '?';
}

/** The user's explanation of a certificate node:tls did not accept. */
export function certificateProblem(
  code: string,
  cert: tls.PeerCertificate | undefined,
  ctx: { gateway: string; host: string; ca: string | undefined; viaProxy: boolean },
): TetherError {
  const who = `the gateway's TLS certificate (${dn(cert?.subject)}, issued by ${dn(cert?.issuer)})`;
  if (code === 'CERT_HAS_EXPIRED') {
    return fail(
      'GATEWAY_TLS_EXPIRED',
      `${ctx.gateway}: ${who} expired on ${cert?.valid_to ?? '?'}: the gateway's operator must renew it`,
    );
  }
  if (code === 'CERT_NOT_YET_VALID') {
    return fail(
      'GATEWAY_TLS_NOT_YET_VALID',
      `${ctx.gateway}: ${who} is not valid before ${cert?.valid_from ?? '?'} (is this machine's clock right?)`,
    );
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return fail(
      'GATEWAY_TLS_NAME_MISMATCH',
      `${ctx.gateway}: ${who} is for ${names(cert)}, not ${ctx.host}: use a gateway address the certificate names`,
    );
  }
  if (UNTRUSTED.has(code)) {
    const store = ctx.ca ? `the CA in gateway_ca (${ctx.ca})` : "this system's CA store";
    return fail(
      'GATEWAY_TLS_UNTRUSTED',
      `${ctx.gateway}: ${who} is not signed by ${store} (${code}): set gateway_ca to the CA that signed it` +
        (ctx.viaProxy ? ' (a TLS-inspecting proxy signs with its own CA)' : ''),
    );
  }
  return fail('GATEWAY_TLS_REFUSED', `${ctx.gateway}: ${who} was refused: ${code}`);
}

function handshakeProblem(e: Error & { code?: string; reason?: string }, gateway: string): TetherError {
  const code = e.code ?? '';
  if (
    code === 'ERR_SSL_WRONG_VERSION_NUMBER' ||
    code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' ||
    code === 'ERR_SSL_RECORD_LAYER_FAILURE' ||
    /wrong version number|packet length too long|unknown protocol/.test(e.message)
  ) {
    return fail(
      'GATEWAY_NOT_TLS',
      `${gateway} does not speak TLS (it answered in plain text; is that the plain SSH port? ` +
        'use "host:port" without tls://, or the gateway\'s TLS port)',
    );
  }
  if (code === 'ECONNRESET' || /disconnected before secure TLS/.test(e.message)) {
    return fail(
      'GATEWAY_TLS_FAILED',
      `${gateway}: the connection closed during the TLS handshake (is that port a TLS listener? the gateway's log says why)`,
      502,
      e,
    );
  }
  return fail('GATEWAY_TLS_FAILED', `${gateway}: TLS handshake failed: ${e.reason ?? e.message}`, 502, e);
}

interface TlsContext {
  host: string;
  port: number;
  gateway: string;
  ca: Buffer | undefined;
  caFile: string | undefined;
  insecure: boolean;
  viaProxy: boolean;
  alpn: string[] | undefined;
  log: Logger | undefined;
}

/** TLS on an open socket; the certificate is checked here, before a byte of SSH is sent. */
function startTls(raw: net.Socket, c: TlsContext, timeoutMs: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      socket: raw,
      host: c.host,
      servername: net.isIP(c.host) ? undefined : c.host,
      ca: c.ca,
      // Checked below, so the refusal can say why; nothing is sent before that check.
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      ALPNProtocols: c.alpn,
    });
    const timer = setTimeout(() => {
      s.destroy();
      raw.destroy();
      reject(fail('GATEWAY_TLS_FAILED', `${c.gateway}: no TLS handshake within ${timeoutMs} ms`, 504));
    }, timeoutMs);
    s.once('error', (e: Error) => {
      clearTimeout(timer);
      raw.destroy();
      reject(handshakeProblem(e, c.gateway));
    });
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      s.on('error', () => {});
      if (!s.authorized) {
        const code = String(s.authorizationError ?? 'UNKNOWN');
        const problem = certificateProblem(code, s.getPeerCertificate(), {
          gateway: c.gateway,
          host: c.host,
          ca: c.caFile,
          viaProxy: c.viaProxy,
        });
        if (!c.insecure) {
          s.destroy();
          reject(problem);
          return;
        }
        c.log?.warn(
          { event: 'connector.tls_unverified', gateway: c.gateway, problem: problem.code },
          `INSECURE: using the gateway's TLS connection although its certificate would be refused ` +
            `(insecure_skip_verify: true): ${problem.message}`,
        );
      }
      resolve(s);
    });
  });
}

function readBody(res: http.IncomingMessage, max: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const finish = () => {
      clearTimeout(timer);
      res.destroy();
      resolve(text.trim().replace(/\s+/g, ' ').slice(0, max));
    };
    const timer = setTimeout(finish, timeoutMs);
    res.setEncoding('utf8');
    res.on('data', (c: string) => {
      text += c;
      if (text.length >= max) finish();
    });
    res.once('end', finish);
    res.once('error', finish);
  });
}

/** The WebSocket upgrade on a verified TLS socket; resolves with the WebSocket as a byte stream. */
function startWebSocket(
  s: tls.TLSSocket,
  url: string,
  path: string,
  gateway: string,
  timeoutMs: number,
): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      settle(
        fail(
          'GATEWAY_WS_FAILED',
          `${gateway}: no answer to the WebSocket upgrade within ${timeoutMs} ms`,
          504,
        ),
      );
    }, timeoutMs);
    const settle = (err: TetherError | undefined, stream?: Duplex) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        ws.terminate();
        s.destroy();
        reject(err);
      } else resolve(stream!);
    };
    const ws = new WebSocket(url, {
      createConnection: () => s,
      perMessageDeflate: false,
      maxPayload: 4 * 1024 * 1024,
      followRedirects: false,
      // A zero masking key: ws then skips masking (and the gateway unmasking) every byte.
      // Masking protects intermediaries from bytes a browser script chose; these bytes are SSH
      // ciphertext inside TLS, chosen by nobody.
      generateMask: (mask: Buffer) => {
        mask.fill(0);
      },
    });
    ws.once('open', () => {
      ws.removeAllListeners('error');
      const stream = createWebSocketStream(ws, {
        readableHighWaterMark: 256 * 1024,
        writableHighWaterMark: 256 * 1024,
      });
      settle(undefined, stream);
    });
    ws.once('unexpected-response', (_req: http.ClientRequest, res: http.IncomingMessage) => {
      const status = res.statusCode ?? 0;
      void readBody(res, 300, 1000).then((body) => {
        const answer = `HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}${body ? `: ${body}` : ''}`;
        settle(
          status === 404
            ? fail(
                'GATEWAY_WS_NOT_FOUND',
                `${gateway}: the gateway has no WebSocket tunnel at ${path} (${answer}); check the path in gateway: "wss://host/path"`,
                404,
              )
            : fail(
                'GATEWAY_WS_REFUSED',
                `${gateway}: the WebSocket upgrade was refused by the gateway or something in front of it (${answer})`,
              ),
        );
      });
    });
    ws.on('error', (e: Error) => {
      settle(fail('GATEWAY_WS_FAILED', `${gateway}: WebSocket upgrade failed: ${e.message}`, 502, e));
    });
  });
}

function readCa(file: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new TetherError('GATEWAY_CA_INVALID', `gateway_ca: cannot read ${file} (${code})`, { status: 400 });
  }
  if (!/-----BEGIN CERTIFICATE-----/.test(pem.toString('latin1'))) {
    throw new TetherError('GATEWAY_CA_INVALID', `gateway_ca: ${file} holds no PEM certificate`, {
      status: 400,
    });
  }
  try {
    tls.createSecureContext({ ca: pem });
  } catch (e) {
    throw new TetherError('GATEWAY_CA_INVALID', `gateway_ca: ${file}: ${(e as Error).message}`, {
      status: 400,
    });
  }
  return pem;
}

/**
 * Builds the way to the gateway from connect.yaml and the environment. Problems the user must
 * fix (an unreadable gateway_ca, a malformed HTTPS_PROXY) are thrown here.
 */
export function gatewayTransport(cfg: TransportConfig, opts: TransportOptions = {}): GatewayTransport {
  const env = opts.env ?? process.env;
  const { host, port } = cfg.gateway;
  const t = cfg.transport;
  const gateway = gatewayText(cfg.gateway, t);
  const proxy = proxyFor(cfg, env);
  const ca = t.kind !== 'ssh' && t.ca ? readCa(t.ca) : undefined;
  const certificate: GatewayRoute['certificate'] =
    t.kind === 'ssh' ? null : t.insecureSkipVerify ? 'NOT CHECKED' : ca ? 'gateway_ca' : 'system CAs';
  const route: GatewayRoute = {
    transport: t.kind,
    gateway,
    proxy: proxy ? proxyLabel(proxy) : null,
    certificate,
    text:
      `${t.kind === 'ssh' ? 'ssh' : t.kind} to ${gateway}` +
      (proxy ? ` via proxy ${proxyLabel(proxy)}` : ' (direct)') +
      (certificate === null
        ? ''
        : certificate === 'NOT CHECKED'
          ? ', TLS certificate NOT CHECKED (insecure_skip_verify)'
          : `, TLS certificate checked against ${certificate === 'gateway_ca' ? `gateway_ca ${t.ca}` : 'the system CAs'}`),
  };
  if (t.insecureSkipVerify) {
    opts.log?.warn(
      { event: 'connector.tls_verify_disabled', gateway, config: cfg.file },
      `INSECURE: the gateway's TLS certificate is NOT checked (insecure_skip_verify: true in ${cfg.file}); ` +
        'anyone on the path can pose as the gateway at the TLS layer: use gateway_ca instead outside a lab',
    );
  }
  if (t.kind === 'ssh' && !proxy) return { route, dial: undefined };

  const tlsCtx: TlsContext = {
    host,
    port,
    gateway,
    ca,
    caFile: t.ca,
    insecure: t.insecureSkipVerify,
    viaProxy: !!proxy,
    alpn: t.kind === 'wss' ? ['http/1.1'] : undefined,
    log: opts.log,
  };
  const dial = async (timeoutMs: number): Promise<Duplex> => {
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const raw = proxy
      ? await connectViaProxy(proxy, host, port, left())
      : await tcpConnect(host, port, left(), `the gateway at ${gateway}`);
    if (t.kind === 'ssh') {
      coalesceWrites(raw);
      return raw;
    }
    const secure = await startTls(raw, tlsCtx, left());
    if (t.kind === 'tls') {
      coalesceWrites(secure);
      return secure;
    }
    const url = `wss://${authority(host, port)}${t.path}`;
    return startWebSocket(secure, url, t.path, gateway, left());
  };
  return { route, dial };
}
