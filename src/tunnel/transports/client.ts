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
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { type ConnectConfig, gatewayText } from '../../config/connect.js';
import type { Logger } from '../../log/index.js';
import { coalesceWrites } from '../pipe.js';
import { readCaFile } from '../tls-material.js';
import { authority, fail } from './client-common.js';
import { connectViaProxy, proxyFor, proxyLabel } from './client-proxy.js';
import { startTls, type TlsContext } from './client-tls.js';
import { startWebSocket } from './client-websocket.js';

export { connectViaProxy, noProxyMatches, proxyFor } from './client-proxy.js';
export { certificateProblem } from './client-tls.js';

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
  const ca =
    t.kind !== 'ssh' && t.ca
      ? readCaFile(t.ca, { what: 'gateway_ca', code: 'GATEWAY_CA_INVALID' })
      : undefined;
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
    // The first step has the whole time (and its message names it, not the time left).
    const raw = proxy
      ? await connectViaProxy(proxy, host, port, timeoutMs)
      : await tcpConnect(host, port, timeoutMs, `the gateway at ${gateway}`);
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
