/**
 * The client side of the HTTP-proxy transport: which proxy the connector uses (connect.yaml
 * `proxy:`, else https_proxy / HTTPS_PROXY unless NO_PROXY says no), and HTTP CONNECT through it
 * with optional Basic credentials. Each refusal gets its own message.
 */
import http from 'node:http';
import net from 'node:net';
import { type ProxySetting, parseProxyUrl, proxyText } from '../../config/connect.js';
import { TetherError } from '../../errors/index.js';
import type { TransportConfig } from './client.js';
import { authority, fail } from './client-common.js';

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

export function proxyLabel(p: ProxySetting): string {
  return `${proxyText(p)} from ${p.source}`;
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
