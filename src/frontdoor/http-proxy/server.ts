import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Server, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { HttpProxyConfig } from '../../config/http-proxy.js';
import { RefusalLog } from '../../core/refusals.js';
import { FailureThrottle } from '../../core/throttle.js';
import { type ErrorCode, isTetherError } from '../../errors/index.js';
import { listenOn } from '../../tunnel/listen.js';
import { readPemFile } from '../../tunnel/tls-material.js';
import { authorizeScopes, methodAllowed } from './authorize.js';
import type { AuthOutcome } from './caller-auth.js';
import { type Framing, requestFraming } from './framing.js';
import { FRAMING_PARSE_ERRORS, sendError, sendRawError } from './respond.js';
import { hostOf, type Route, RouteTable } from './routes.js';
import { clientErrorResponse, isRepeated, parseTarget, type RequestTarget } from './sanitize.js';
import type { FrontDoorDeps, PreparedRoute } from './types.js';
import { UpstreamForwarder } from './upstream-exchange.js';
import { tenantUpstreamHost } from './upstream-target.js';

export type { FrontDoorDeps, PreparedRoute };

const READ_ONLY_ALLOW = 'GET, HEAD';

type Req = http.IncomingMessage;
type Res = http.ServerResponse;

/**
 * The HTTP front door: one HTTP(S) listener, routes by host and path prefix, authenticates
 * the caller, authorizes the path, swaps the caller's credentials for the upstream's and
 * streams both ways without buffering.
 */
export class HttpFrontDoor {
  readonly server: http.Server;
  private readonly table: RouteTable;
  private readonly throttle: FailureThrottle;
  readonly proto: 'http' | 'https';
  private readonly debug: boolean;
  private readonly refusals: Pick<RefusalLog, 'refuse'>;
  private readonly upstream: UpstreamForwarder;

  constructor(
    private readonly cfg: HttpProxyConfig,
    routes: PreparedRoute[],
    private readonly deps: FrontDoorDeps,
  ) {
    this.table = new RouteTable(routes);
    this.throttle = new FailureThrottle(
      deps.clock,
      {
        maxFailures: cfg.max_failures,
        windowMs: cfg.failure_window,
        blockMs: cfg.failure_window,
      },
      deps.throttles && { to: deps.throttles, name: 'http_proxy' },
    );
    this.debug = deps.log.isLevelEnabled('debug');
    this.refusals = deps.refusals ?? new RefusalLog(deps.log, deps.clock);
    this.upstream = new UpstreamForwarder(cfg, deps, this);
    const opts: http.ServerOptions = {
      maxHeaderSize: cfg.max_header_bytes,
      requestTimeout: 0,
      headersTimeout: cfg.header_timeout,
      keepAliveTimeout: 5_000,
      noDelay: true,
    };
    const onRequest = (req: Req, res: Res) => this.guarded(req, res, false);
    if (cfg.tls) {
      this.proto = 'https';
      this.server = https.createServer(
        {
          ...opts,
          cert: readPemFile(cfg.tls.cert, { what: 'http_proxy.tls.cert', code: 'CONFIG_INVALID' }),
          key: readPemFile(cfg.tls.key, { what: 'http_proxy.tls.key', code: 'CONFIG_INVALID' }),
        },
        onRequest,
      );
    } else {
      this.proto = 'http';
      this.server = http.createServer(opts, onRequest);
    }
    // A backstop for sockets nothing else watches; exchanges have their own timeouts (see sweep).
    this.server.setTimeout(
      cfg.connect_timeout + cfg.response_timeout + cfg.idle_timeout + cfg.header_timeout,
    );
    this.server.on('checkContinue', (req: Req, res: Res) => this.guarded(req, res, true));
    this.server.on('clientError', (err: NodeJS.ErrnoException & { reason?: string }, socket: Duplex) =>
      this.onClientError(err, socket),
    );
  }

  listen(): Promise<AddressInfo> {
    this.upstream.start();
    this.deps.proxyGate?.guard(this.server);
    const { host, port } = this.cfg.listen;
    return (this.deps.listen ?? listenOn)(this.server as Server, { host, port, key: 'http_proxy' });
  }

  /** Drain: no new connection; requests in progress finish, idle keep-alive connections close. */
  stopAccepting(): void {
    this.server.close();
    this.server.closeIdleConnections();
  }

  close(): Promise<void> {
    this.upstream.stop();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private onClientError(err: NodeJS.ErrnoException & { reason?: string }, socket: Duplex): void {
    const msg = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || msg?.headersSent) {
      socket.destroy();
      return;
    }
    const r = clientErrorResponse(err.code, err.reason);
    sendRawError(socket, r.status, r.code, r.message);
    const source = (socket as Socket).remoteAddress ?? '';
    if (err.code && FRAMING_PARSE_ERRORS.has(err.code))
      this.refusals.refuse(
        'http_framing',
        source,
        { source, parse_error: err.code },
        `refused a request whose framing could be read two ways: ${r.message}`,
      );
    this.deps.log.info(
      {
        event: 'http_proxy.bad_request',
        status: r.status,
        parse_error: err.code,
        source: (socket as Socket).remoteAddress,
      },
      `refused a malformed request: ${r.message}`,
    );
    this.deps.onResponse?.('-', r.status);
  }

  /**
   * The request boundary: an exception thrown while handling a request is logged and answered
   * (502, or the connection closed when the answer had begun); it never ends the process and the
   * next request is served as usual.
   */
  private guarded(req: Req, res: Res, expectContinue: boolean): void {
    try {
      this.onRequest(req, res, expectContinue);
    } catch (err) {
      this.crashed(req, res, undefined, err);
    }
  }

  /** Wraps a callback of one request (events, promises) in the same guard. */
  guard<A extends unknown[]>(
    req: Req,
    res: Res,
    route: PreparedRoute | undefined,
    fn: (...a: A) => void,
  ): (...a: A) => void {
    return (...a: A) => {
      try {
        fn(...a);
      } catch (err) {
        this.crashed(req, res, route, err);
      }
    };
  }

  private crashed(req: Req, res: Res, route: PreparedRoute | undefined, err: unknown): void {
    const where = route ? `route ${route.name}` : 'a request';
    this.deps.log.error(
      {
        event: 'http_proxy.internal_error',
        route: route?.name ?? '-',
        source: req.socket?.remoteAddress,
        err,
      },
      `${where} failed inside the front door: ${err instanceof Error ? err.message : String(err)}; answered 502`,
    );
    try {
      if (res.headersSent) res.destroy();
      else this.fail(req, res, route, 502, 'INTERNAL', 'the front door could not handle this request');
    } catch {
      res.destroy();
    }
  }

  refuse(reason: string, req: Req, route: PreparedRoute | undefined, message: string): void {
    const source = req.socket.remoteAddress ?? '';
    this.refusals.refuse(
      reason,
      `${route?.name ?? '-'}\0${source}`,
      { source, ...(route ? { route: route.name } : {}) },
      `refused a request${route ? ` to route ${route.name}` : ''}: ${message}`,
    );
  }

  private onRequest(req: Req, res: Res, expectContinue: boolean): void {
    const started = performance.now();
    let routeName = '-';
    const report = this.deps.onResponse;
    if (report) {
      res.once('close', () =>
        report(routeName, res.headersSent ? res.statusCode : 0, (performance.now() - started) / 1000),
      );
    }
    const target = parseTarget(req.url ?? '');
    if (typeof target === 'string') {
      this.fail(req, res, undefined, 400, 'BAD_REQUEST', target);
      return;
    }
    if (isRepeated(req.rawHeaders, 'host')) {
      this.fail(req, res, undefined, 400, 'BAD_REQUEST', 'more than one Host header');
      return;
    }
    const framing = requestFraming(req.rawHeaders, req.httpVersion);
    if (typeof framing === 'string') {
      this.refuse('http_framing', req, undefined, framing);
      this.fail(req, res, undefined, 400, 'BAD_FRAMING', framing, { Connection: 'close' });
      return;
    }
    const route = this.table.match(hostOf(req.headers.host), target.path) as PreparedRoute | undefined;
    if (!route) {
      this.fail(req, res, undefined, 404, 'NO_ROUTE', 'no route for this host and path');
      return;
    }
    routeName = route.name;
    if (this.debug) this.accessLog(req, res, route, target, started);
    const method = req.method ?? 'GET';
    if (!methodAllowed(route.cfg.read_only, method)) {
      this.fail(
        req,
        res,
        route,
        405,
        'READ_ONLY',
        `this route is read-only: only ${READ_ONLY_ALLOW} are allowed`,
        {
          Allow: READ_ONLY_ALLOW,
        },
      );
      return;
    }
    if (route.cfg.read_only && framing.kind !== 'none') {
      const msg = 'this route is read-only: a request body is not allowed';
      this.refuse('http_read_only_body', req, route, msg);
      this.fail(req, res, route, 400, 'READ_ONLY_BODY', msg, { Connection: 'close' });
      return;
    }
    if (route.auth.type === 'none') {
      this.authorized(
        req,
        res,
        route,
        target,
        framing,
        { ok: true, subject: null, scopes: null },
        expectContinue,
      );
      return;
    }
    const source = req.socket.remoteAddress ?? '';
    const blocked = this.throttle.blockedFor(source);
    if (blocked > 0) {
      this.fail(
        req,
        res,
        route,
        429,
        'TOO_MANY_FAILURES',
        'too many failed logins from your address; try again later',
        {
          'Retry-After': String(Math.ceil(blocked / 1000)),
        },
      );
      return;
    }
    const decided = (outcome: AuthOutcome) => {
      if (!outcome.ok) {
        if (outcome.presented) {
          this.throttle.fail(source);
          this.deps.onAuthFailure?.(route.name);
          this.deps.log.info(
            {
              event: 'http_proxy.auth_failed',
              route: route.name,
              source,
              user: outcome.user,
              reason: outcome.message,
            },
            `refused a caller of route ${route.name}: ${outcome.message}`,
          );
        }
        this.fail(req, res, route, 401, 'UNAUTHORIZED', outcome.message);
        return;
      }
      this.authorized(req, res, route, target, framing, outcome, expectContinue);
    };
    let outcome: AuthOutcome | Promise<AuthOutcome>;
    try {
      outcome = route.auth.check(req.headers.authorization);
    } catch (err) {
      this.failWith(req, res, route, err);
      return;
    }
    // A cached verdict is used at once; only a real verification waits, and only a real one is
    // audited when it succeeds (a caller's every request would flood the audit log).
    if (outcome instanceof Promise)
      outcome.then(
        this.guard(req, res, route, (o: AuthOutcome) => {
          if (o.ok && !o.shared) this.auditVerified(route, source, o);
          decided(o);
        }),
        this.guard(req, res, route, (err: unknown) => this.failWith(req, res, route, err)),
      );
    else decided(outcome);
  }

  /** `http_proxy.auth_succeeded`: who, from where, to what; never the credential. */
  private auditVerified(route: PreparedRoute, source: string, who: AuthOutcome & { ok: true }): void {
    const to = route.cfg.to;
    this.deps.log.info(
      {
        event: 'http_proxy.auth_succeeded',
        route: route.name,
        source,
        ...(who.user !== undefined ? { user: who.user } : {}),
        subject: who.subject,
        ...(to.kind === 'tenant' ? { tenant: to.tenant, repository: to.label } : {}),
        target: to.text,
      },
      `verified ${who.subject ?? 'a caller'} for route ${route.name}`,
    );
  }

  private authorized(
    req: Req,
    res: Res,
    route: PreparedRoute,
    target: RequestTarget,
    framing: Framing,
    who: AuthOutcome & { ok: true },
    expectContinue: boolean,
  ): void {
    const dest = route.cfg.to;
    const outside =
      dest.kind === 'tenant'
        ? this.deps.allowlists?.callerRefusal(dest.tenant, dest.label, req.socket.remoteAddress ?? '')
        : undefined;
    if (outside !== undefined) {
      this.refuse('allow_from', req, route, outside);
      this.fail(req, res, route, 403, 'SOURCE_NOT_ALLOWED', outside);
      return;
    }
    const decision = authorizeScopes(who.scopes, {
      method: req.method ?? 'GET',
      path: target.path,
      query: target.query,
      prefix: route.cfg.path_prefix,
      dockerRegistry: route.cfg.docker_registry,
    });
    if (!decision.ok) {
      this.deps.log.info(
        {
          event: 'http_proxy.denied',
          route: route.name,
          source: req.socket.remoteAddress,
          subject: who.subject,
          path: target.path,
          reason: decision.message,
        },
        `denied ${who.subject ?? 'a caller'} on route ${route.name}: ${decision.message}`,
      );
      this.fail(req, res, route, decision.status, 'DENIED', decision.message);
      return;
    }
    let credential: [string, string] | undefined;
    if (route.credential) {
      try {
        credential = [route.credential.headerName, route.credential.value()];
      } catch (err) {
        if (isTetherError(err, 'UPSTREAM_CREDENTIAL_INVALID'))
          this.refuse('upstream_credential_invalid', req, route, err.message);
        this.failWith(req, res, route, err);
        return;
      }
    }
    let upstreamHost: string;
    const to = route.cfg.to;
    if (route.cfg.preserve_host && req.headers.host) upstreamHost = req.headers.host;
    else if (to.kind === 'url') upstreamHost = to.host;
    else {
      const h = tenantUpstreamHost(this.deps.registry.get(to.tenant, to.label)?.meta, req.headers.host);
      if (typeof h !== 'string') {
        const msg = `the repository ${to.label} of tenant ${to.tenant} sent metadata the front door cannot use: ${h.refused}`;
        this.refuse('upstream_bad_metadata', req, route, msg);
        this.fail(
          req,
          res,
          route,
          502,
          'UPSTREAM_METADATA_INVALID',
          `the repository's metadata cannot be used (${h.refused})`,
        );
        return;
      }
      upstreamHost = h;
    }
    if (expectContinue) res.writeContinue();
    this.upstream.forward(
      req,
      res,
      route,
      target,
      framing,
      upstreamHost,
      credential,
      who.subject ?? who.user,
    );
  }

  private failWith(req: Req, res: Res, route: PreparedRoute, err: unknown): void {
    if (isTetherError(err)) {
      if (err.status >= 500) {
        this.deps.log.warn(
          { event: 'http_proxy.unavailable', route: route.name, code: err.code },
          `route ${route.name}: ${err.message}`,
        );
      }
      this.fail(req, res, route, err.status, err.code, err.message);
      return;
    }
    this.deps.log.error({ event: 'http_proxy.internal_error', route: route.name, err }, 'internal error');
    this.fail(req, res, route, 500, 'INTERNAL', 'internal error');
  }

  fail(
    req: Req,
    res: Res,
    route: PreparedRoute | undefined,
    status: number,
    code: ErrorCode,
    message: string,
    extra: Record<string, string> = {},
  ): void {
    sendError(req, res, route, status, code, message, extra);
  }

  private accessLog(req: Req, res: Res, route: Route, target: RequestTarget, started: number): void {
    // Read now: the upstream client lets go of the request's socket once it has sent the body.
    const source = req.socket.remoteAddress;
    res.once('close', () => {
      this.deps.log.debug(
        {
          event: 'http_proxy.request',
          route: route.name,
          method: req.method,
          path: target.path,
          status: res.statusCode,
          complete: res.writableFinished,
          ms: Math.round((performance.now() - started) * 10) / 10,
          source,
        },
        'request',
      );
    });
  }
}
