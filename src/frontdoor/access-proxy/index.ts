import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { AccessProxyConfig } from '../../config/access-proxy.js';
import type { Component } from '../../core/component.js';
import type { LiveForward } from '../../core/forward-registry.js';
import { parseLabel } from '../../core/ids.js';
import { FailureThrottle } from '../../core/throttle.js';
import { type ErrorCode, isTetherError } from '../../errors/index.js';
import { type Logger, withoutUserinfo } from '../../log/index.js';
import type { BrokeredConnection, BrokerRequest } from '../../tunnel/broker.js';
import { listenOn } from '../../tunnel/listen.js';
import { AccessAuthorizer, type AccessRefusal, type AccessTarget } from './authorize.js';
import type { AccessProxyDeps } from './deps.js';
import { forwardHttp, httpSchemeOf } from './http-forward.js';

export { parseRepoAuthority, repoAddress } from './authority.js';
export type { AccessProxyDeps } from './deps.js';
export { basicAuthorization, parseProxyAuthorization } from './proxy-auth.js';

/** Largest request head (request line + headers) accepted; bigger ones get 431. */
export const MAX_HEADER_BYTES = 16 * 1024;
const REALM = 'Proxy-Authenticate';
const CHALLENGE = 'Basic realm="tether", charset="UTF-8"';

interface Refusal {
  status: number;
  code: ErrorCode;
  message: string;
  challenge?: boolean;
  retryAfter?: number;
}

function refusalHeaders(r: Refusal, body: string): Record<string, string | number> {
  return {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'X-Tether-Error': r.code,
    ...(r.challenge ? { [REALM]: CHALLENGE } : {}),
    ...(r.retryAfter ? { 'Retry-After': r.retryAfter } : {}),
  };
}

/** A complete HTTP/1.1 response for a raw socket (CONNECT refusals, client errors). */
function rawResponse(r: Refusal): string {
  const body = `${r.message}\n`;
  const head = Object.entries({ ...refusalHeaders(r, body), Connection: 'close' })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return `HTTP/1.1 ${r.status} ${http.STATUS_CODES[r.status] ?? 'Error'}\r\n${head}\r\n${body}`;
}

/** What the log may show of a caller's target: userinfo (a key) removed, length bounded. */
const printable = (s: string | undefined, max = 300) => withoutUserinfo(s ?? '').slice(0, max);

/**
 * The access proxy: HTTP CONNECT to `<repo>.<group>.<tenant>:<any port>` with
 * `Proxy-Authorization: Basic base64(<tenant>:<group key>)`, then raw bytes both ways; and
 * plain absolute-form requests (`GET http://web.grp.acme/path`) for HTTP-based repositories.
 */
export class AccessProxy implements Component {
  readonly name = 'access_proxy';
  private readonly server: http.Server;
  private readonly sockets = new Set<Duplex>();
  private readonly authorizer: AccessAuthorizer;
  private readonly log: Logger;
  private unsubscribe?: () => void;

  constructor(
    private readonly ctx: AccessProxyDeps,
    private readonly cfg: AccessProxyConfig,
  ) {
    this.log = ctx.log.child({ component: 'access_proxy' });
    const throttle = new FailureThrottle(
      ctx.clock,
      {
        maxFailures: cfg.max_failures,
        windowMs: cfg.failure_window,
        blockMs: cfg.failure_window,
      },
      ctx.throttles && { to: ctx.throttles, name: 'access_proxy' },
    );
    this.authorizer = new AccessAuthorizer({
      store: ctx.store,
      registry: ctx.registry,
      groupKeys: ctx.groupKeys,
      throttle,
    });
    this.server = http.createServer({
      maxHeaderSize: MAX_HEADER_BYTES,
      requireHostHeader: false,
      headersTimeout: cfg.header_timeout,
      requestTimeout: 0,
      connectionsCheckingInterval: Math.min(1_000, cfg.header_timeout),
    });
    // Every handler below is guarded: an exception is logged and answered (500 or the socket
    // closed), never left to end the process.
    this.server.on('connection', (s: Socket) => {
      try {
        this.onConnection(s);
      } catch (err) {
        this.log.error({ event: 'access_proxy.internal_error', err }, 'access proxy connection failed');
        s.destroy();
      }
    });
    this.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.onRequest(req, res).catch((err: unknown) => this.internalError(err, res));
    });
    this.server.on('connect', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      this.onConnect(req, socket, head).catch((err: unknown) => {
        this.log.error({ err }, 'access proxy CONNECT failed');
        socket.destroy();
      });
    });
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex) => {
      const r: Refusal = {
        status: 400,
        code: 'UPGRADE_NOT_PROXIED',
        message: 'protocol upgrades are not proxied in absolute form; use CONNECT',
      };
      try {
        this.audit(req, r);
      } catch (err) {
        this.log.error({ event: 'access_proxy.internal_error', err }, 'access proxy upgrade refusal failed');
      }
      socket.end(rawResponse(r));
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) =>
      this.onClientError(err, socket),
    );
  }

  async start(): Promise<string> {
    const { registry, groupKeys } = this.ctx;
    // A group key exists as soon as a forward of its group is online, so the proxy can check it
    // before anyone lists the directory.
    const ensure = (f: LiveForward) => {
      const p = parseLabel(f.label);
      if (!p) return;
      groupKeys
        .ensure(f.tenant, p.group)
        .catch((err: unknown) =>
          this.log.warn({ err, tenant: f.tenant, group: p.group }, 'could not create the group key'),
        );
    };
    const onForward = (e: { type: string; forward: LiveForward }) => {
      if (e.type === 'up') ensure(e.forward);
    };
    registry.on('forward', onForward);
    this.unsubscribe = () => registry.off('forward', onForward);
    for (const f of registry.list()) ensure(f);

    const { host, port } = this.cfg.listen;
    this.ctx.proxyGate?.guard(this.server);
    const a = await (this.ctx.listen ?? listenOn)(this.server, { host, port, key: 'access_proxy' });
    this.server.on('error', (err) => this.log.error({ err }, 'access proxy listener failed'));
    return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  /** Drain: no new connection; open tunnels finish (idle keep-alive connections close). */
  async drain(): Promise<void> {
    this.server.close();
    this.server.closeIdleConnections();
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    this.server.closeAllConnections();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /** Closes a connection that sends no complete request head within `header_timeout`. */
  private onConnection(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    const timer = setTimeout(() => {
      this.log.info(
        { event: 'access_proxy.idle_closed', audit: true, source: socket.remoteAddress },
        'access proxy: closed a connection that sent no request in time',
      );
      socket.destroy();
    }, this.cfg.header_timeout);
    timer.unref();
    (socket as Socket & { tetherIdle?: NodeJS.Timeout }).tetherIdle = timer;
    socket.once('close', () => clearTimeout(timer));
  }

  private gotHead(socket: Duplex): void {
    const s = socket as Duplex & { tetherIdle?: NodeJS.Timeout };
    if (s.tetherIdle) {
      clearTimeout(s.tetherIdle);
      s.tetherIdle = undefined;
    }
  }

  private audit(
    req: http.IncomingMessage,
    r: Refusal | { status: 200 },
    extra: Partial<AccessRefusal> & { target?: AccessTarget } = {},
  ): void {
    const allowed = r.status === 200;
    this.log.info(
      {
        event: allowed ? 'access_proxy.allowed' : 'access_proxy.denied',
        audit: true,
        method: req.method,
        source: req.socket.remoteAddress,
        tenant: extra.target?.tenant ?? extra.tenant,
        repository: extra.target?.address ?? extra.address,
        ...(extra.address || extra.target
          ? {}
          : { authority: printable(req.method === 'CONNECT' ? req.url : undefined) }),
        status: r.status,
        ...('code' in r ? { code: r.code, reason: r.message } : {}),
      },
      allowed ? 'access proxy: allowed' : `access proxy: denied (${r.status})`,
    );
  }

  private async onConnect(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    this.gotHead(socket);
    socket.pause();
    socket.on('error', () => {});
    const source = req.socket.remoteAddress ?? '';
    const d = await this.authorizer.authorize({
      authority: req.url ?? '',
      authorization: req.headers['proxy-authorization'],
      source,
    });
    if (!d.ok) {
      this.audit(req, d, d);
      socket.end(rawResponse(d));
      return;
    }
    const t = d.target;
    const r = await this.ctx.broker.splice(this.brokerRequest(req, t), socket, {
      head,
      accepted: (caller) => {
        this.audit(req, { status: 200 }, { target: t });
        caller.write('HTTP/1.1 200 Connection established\r\n\r\n');
      },
    });
    if ('refused' in r) {
      const refusal = this.openFailure(r.refused);
      this.audit(req, refusal, { target: t });
      socket.end(rawResponse(refusal));
    }
  }

  /** What the broker needs to know of a caller allowed to reach `t`. */
  private brokerRequest(req: http.IncomingMessage, t: AccessTarget): BrokerRequest {
    return {
      tenant: t.tenant,
      label: t.label,
      origin: { address: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0 },
      frontDoor: 'access_proxy',
      // The caller proved it holds this group's key.
      identity: `group key ${t.group}`,
    };
  }

  private async onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.gotHead(req.socket);
    const url = req.url ?? '';
    const refuse = (r: Refusal, extra: Partial<AccessRefusal> & { target?: AccessTarget } = {}) => {
      this.audit(req, r, extra);
      const body = `${r.message}\n`;
      res.writeHead(r.status, refusalHeaders(r, body));
      res.end(body);
    };
    const m = /^(https?):\/\/([^/?#]*)([^#]*)/i.exec(url);
    if (!m) {
      return refuse({
        status: 400,
        code: 'NOT_A_PROXY_REQUEST',
        message:
          'this is the Tether access proxy: use CONNECT <repo>.<group>.<tenant>:<port>, or an absolute URL such as GET http://web.grp.acme/',
      });
    }
    if (m[1]!.toLowerCase() === 'https') {
      return refuse({
        status: 400,
        code: 'USE_CONNECT',
        message: 'https:// URLs go through CONNECT (configure the proxy for https too)',
      });
    }
    const authority = m[2]!;
    const rest = m[3] ?? '';
    const path = rest === '' ? '/' : rest.startsWith('?') ? `/${rest}` : rest;
    const source = req.socket.remoteAddress ?? '';
    const d = await this.authorizer.authorize({
      authority,
      authorization: req.headers['proxy-authorization'],
      source,
    });
    if (!d.ok) return refuse(d, d);
    const t = d.target;
    const scheme = httpSchemeOf(t.meta);
    if (!scheme) {
      const what = t.meta?.service
        ? `a ${t.meta.service} service`
        : 'of an unknown service (its connector sent no repository metadata)';
      return refuse(
        {
          status: 400,
          code: 'NOT_AN_HTTP_REPOSITORY',
          message: `repository ${t.address} is ${what}; reach it through CONNECT`,
        },
        { target: t },
      );
    }
    let conn: BrokeredConnection;
    try {
      conn = await this.ctx.broker.open(this.brokerRequest(req, t));
    } catch (err) {
      return refuse(this.openFailure(err), { target: t });
    }
    this.audit(req, { status: 200 }, { target: t });
    forwardHttp({
      req,
      res,
      stream: conn.stream,
      path,
      scheme,
      meta: t.meta,
      address: t.address,
      verifyTls: this.cfg.verify_upstream_tls,
      done: (r) =>
        conn.close(r.bytesIn, r.bytesOut, {
          message: 'request forwarded',
          fields: { method: req.method, status: r.status, ...(r.error ? { error: r.error } : {}) },
        }),
    });
  }

  private openFailure(err: unknown): Refusal {
    if (isTetherError(err)) return { status: err.status, code: err.code, message: err.message };
    this.log.error({ err }, 'access proxy could not open a channel');
    return {
      status: 502,
      code: 'FORWARD_OPEN_FAILED',
      message: 'the connector did not accept the connection',
    };
  }

  private onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const r: Refusal =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? {
            status: 431,
            code: 'HEADERS_TOO_LARGE',
            message: `request head larger than ${MAX_HEADER_BYTES} bytes`,
          }
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? { status: 408, code: 'REQUEST_TIMEOUT', message: 'no complete request head in time' }
          : err.code === 'HPE_INVALID_URL'
            ? {
                status: 400,
                code: 'BAD_REPOSITORY_ADDRESS',
                message:
                  'bad repository address: non-ASCII, space or control characters in the request target',
              }
            : { status: 400, code: 'BAD_REQUEST', message: 'malformed HTTP request' };
    const source = (socket as Socket).remoteAddress;
    this.log.info(
      {
        event: 'access_proxy.denied',
        audit: true,
        source,
        status: r.status,
        code: r.code,
        reason: r.message,
        parser: err.code,
      },
      `access proxy: denied (${r.status})`,
    );
    socket.end(rawResponse(r));
  }

  private internalError(err: unknown, res: http.ServerResponse): void {
    this.log.error({ err }, 'access proxy request failed');
    if (!res.headersSent) {
      const body = 'internal error\n';
      res.writeHead(500, {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    } else res.destroy();
  }
}

/** The gateway's `access_proxy` front door; undefined when the config leaves it off. */
export function accessProxyComponent(
  cfg: AccessProxyConfig | undefined,
  deps: AccessProxyDeps,
): Component | undefined {
  if (!cfg) return undefined;
  return new AccessProxy(deps, cfg);
}
