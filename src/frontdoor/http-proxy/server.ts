import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { HttpProxyConfig } from '../../config/http-proxy.js';
import type { Clock } from '../../core/clock.js';
import type { ForwardRegistry } from '../../core/forward-registry.js';
import { RefusalLog } from '../../core/refusals.js';
import { FailureThrottle } from '../../core/throttle.js';
import { isTetherError } from '../../errors/index.js';
import type { Logger } from '../../log/index.js';
import { authorizeScopes, methodAllowed } from './authorize.js';
import type { AuthOutcome, RouteAuthenticator } from './caller-auth.js';
import { API_VERSION, API_VERSION_HEADER } from './docker-registry.js';
import { type Framing, requestFraming } from './framing.js';
import { FRAMING_PARSE_ERRORS, sendError, sendRawError } from './respond.js';
import { hostOf, type Route, RouteTable, upstreamPath } from './routes.js';
import {
  clientErrorResponse,
  isRepeated,
  parseTarget,
  type RequestTarget,
  responseHeaders,
  upstreamHeaders,
} from './sanitize.js';
import type { UpstreamCredential } from './upstream-auth/index.js';
import { asSocket, isSafeReason, tenantUpstreamHost } from './upstream-target.js';

/** A route with everything it needs at request time. */
export interface PreparedRoute extends Route {
  auth: RouteAuthenticator;
  credential?: UpstreamCredential;
  /** Keep-alive agent for URL targets. */
  agent?: http.Agent;
}

export interface FrontDoorDeps {
  registry: Pick<ForwardRegistry, 'open' | 'get'>;
  clock: Clock;
  log: Logger;
  /**
   * Called once per request when it ends (metrics): its route ("-" when none matched), the
   * status sent (0 when the caller went away before any), and seconds from accept to close.
   */
  onResponse?: (route: string, status: number, seconds?: number) => void;
  /** Called when a caller presented wrong credentials (metrics). */
  onAuthFailure?: (route: string) => void;
  /** Counts refused requests (`tether_refused_total{reason}`); built from `log` and `clock` when absent. */
  refusals?: Pick<RefusalLog, 'refuse'>;
}

const READ_ONLY_ALLOW = 'GET, HEAD';

type Req = http.IncomingMessage;
type Res = http.ServerResponse;

/** Where an upstream request is; see `sweep`. */
interface Exchange {
  phase: 'connect' | 'upload' | 'response' | 'download';
  /** When the phase started. */
  since: number;
  /** When a body byte last moved. */
  last: number;
  res: http.ServerResponse;
}

class UpstreamTimeout extends Error {
  constructor(
    readonly phase: 'connect' | 'response' | 'idle',
    ms: number,
  ) {
    super(`upstream ${phase} timeout after ${ms} ms`);
  }
}

/**
 * The HTTP front door: one HTTP(S) listener, routes by host and path prefix, authenticates
 * the caller, authorizes the path, swaps the caller's credentials for the upstream's and
 * streams both ways without buffering.
 */
export class HttpFrontDoor {
  readonly server: http.Server;
  private readonly table: RouteTable;
  private readonly throttle: FailureThrottle;
  private readonly proto: 'http' | 'https';
  private readonly debug: boolean;
  private readonly refusals: Pick<RefusalLog, 'refuse'>;
  /** Requests in flight upstream, watched by one coarse timer (cheaper than timers per request). */
  private readonly exchanges = new Map<http.ClientRequest, Exchange>();
  private sweeper?: NodeJS.Timeout;

  constructor(
    private readonly cfg: HttpProxyConfig,
    routes: PreparedRoute[],
    private readonly deps: FrontDoorDeps,
  ) {
    this.table = new RouteTable(routes);
    this.throttle = new FailureThrottle(deps.clock, {
      maxFailures: cfg.max_failures,
      windowMs: cfg.failure_window,
      blockMs: cfg.failure_window,
    });
    this.debug = deps.log.isLevelEnabled('debug');
    this.refusals = deps.refusals ?? new RefusalLog(deps.log, deps.clock);
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
        { ...opts, cert: readFileSync(cfg.tls.cert), key: readFileSync(cfg.tls.key) },
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

  /**
   * Timeouts by phase: reaching the upstream (connect_timeout), the upstream thinking between
   * the end of the request and its response head (response_timeout), and bytes stopping in
   * either direction while a body moves (idle_timeout). A transfer that keeps moving is
   * never cut.
   */
  private sweep(): void {
    const now = this.deps.clock.now();
    const { connect_timeout, response_timeout, idle_timeout } = this.cfg;
    for (const [up, x] of this.exchanges) {
      let err: UpstreamTimeout | undefined;
      if (x.phase === 'connect' && now - x.since >= connect_timeout)
        err = new UpstreamTimeout('connect', connect_timeout);
      else if (x.phase === 'response' && now - x.since >= response_timeout)
        err = new UpstreamTimeout('response', response_timeout);
      else if ((x.phase === 'upload' || x.phase === 'download') && now - x.last >= idle_timeout)
        err = new UpstreamTimeout('idle', idle_timeout);
      if (!err) continue;
      this.exchanges.delete(up);
      up.destroy(err);
      // A caller that stopped reading after the upstream finished.
      if (x.phase === 'download') x.res.destroy();
    }
  }

  listen(): Promise<AddressInfo> {
    const { connect_timeout, response_timeout, idle_timeout } = this.cfg;
    const every = Math.max(
      50,
      Math.min(1_000, Math.floor(Math.min(connect_timeout, response_timeout, idle_timeout) / 4)),
    );
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.cfg.listen.host, port: this.cfg.listen.port }, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
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
  private guard<A extends unknown[]>(
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

  private refuse(reason: string, req: Req, route: PreparedRoute | undefined, message: string): void {
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
          if (o.ok) this.auditVerified(route, source, o);
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
    this.forward(req, res, route, target, framing, upstreamHost, credential);
  }

  private forward(
    req: Req,
    res: Res,
    route: PreparedRoute,
    target: RequestTarget,
    framing: Framing,
    upstreamHost: string,
    credential: [string, string] | undefined,
  ): void {
    const { cfg } = route;
    const to = cfg.to;
    const headers = upstreamHeaders(req.rawHeaders, {
      host: upstreamHost,
      clientAddress: req.socket.remoteAddress ?? '',
      proto: this.proto,
      forwardedHost: req.headers.host,
      credential,
      framing,
      method: req.method,
      close: to.kind === 'tenant',
    });
    const options: http.RequestOptions = {
      method: req.method,
      path: upstreamPath(cfg, target.path, target.query),
      headers: headers as unknown as http.OutgoingHttpHeaders,
      setHost: false,
    };
    let bodyBytes = 0;
    let respBytes = 0;
    if (to.kind === 'url') {
      options.protocol = to.protocol;
      options.hostname = to.hostname;
      options.port = to.port;
      options.agent = route.agent;
    } else {
      const origin = { address: req.socket.remoteAddress ?? '127.0.0.1', port: req.socket.remotePort ?? 0 };
      options.createConnection = ((_o: unknown, cb: (err: Error | null, s?: Socket) => void) => {
        this.deps.registry.open(to.tenant, to.label, origin).then(
          this.guard(req, res, route, (conn) => {
            conn.stream.on('data', (c: Buffer) => {
              respBytes += c.length;
            });
            conn.stream.once('close', () => conn.close(bodyBytes, respBytes));
            cb(null, asSocket(conn.stream));
          }),
          this.guard(req, res, route, (err: Error) => cb(err)),
        );
        return undefined;
      }) as unknown as http.RequestOptions['createConnection'];
    }
    const up = (to.kind === 'url' && to.protocol === 'https:' ? https : http).request(options);
    const now = this.deps.clock.now();
    const x: Exchange = { phase: 'connect', since: now, last: now, res };
    this.exchanges.set(up, x);
    const done = () => this.exchanges.delete(up);
    const touch = () => {
      x.last = this.deps.clock.now();
    };
    const connected = () => {
      if (x.phase === 'connect') {
        x.phase = 'upload';
        x.last = this.deps.clock.now();
      }
    };
    up.once('socket', (s: Socket) => {
      if (s.connecting) s.once('connect', connected);
      else connected();
    });
    up.once('finish', () => {
      if (x.phase === 'upload' || x.phase === 'connect') {
        x.phase = 'response';
        x.since = this.deps.clock.now();
      }
    });
    up.on(
      'error',
      this.guard(req, res, route, (err: Error) => {
        done();
        req.unpipe(up);
        this.upstreamFailed(req, res, route, err);
      }),
    );
    up.on(
      'response',
      this.guard(req, res, route, (ures: http.IncomingMessage) => {
        x.phase = 'download';
        x.last = this.deps.clock.now();
        this.relayResponse(req, res, route, up, ures, touch, done);
      }),
    );
    res.on('close', () => {
      done();
      if (!res.writableFinished) up.destroy();
    });
    // A caller that goes away mid-body leaves the upstream request unfinished: never reuse it.
    req.once('aborted', () => up.destroy());
    req.once('error', () => up.destroy());
    if (framing.kind !== 'none') {
      req.on('data', (c: Buffer) => {
        bodyBytes += c.length;
        x.last = this.deps.clock.now();
      });
      req.pipe(up);
    } else {
      up.end();
    }
  }

  /**
   * Passes the upstream's answer on. A status outside 200-599 (1xx answers are consumed by
   * node's client), a reason phrase with control characters, or headers node will not write get
   * the caller a 502, and the upstream connection is dropped.
   */
  private relayResponse(
    req: Req,
    res: Res,
    route: PreparedRoute,
    up: http.ClientRequest,
    ures: http.IncomingMessage,
    touch: () => void,
    done: () => void,
  ): void {
    const { cfg } = route;
    const to = cfg.to;
    {
      const status = ures.statusCode ?? 0;
      if (status < 200 || status > 599 || !isSafeReason(ures.statusMessage)) {
        done();
        up.destroy();
        this.badResponse(
          req,
          res,
          route,
          status < 200 || status > 599 ? `status ${status}` : 'a control character in its reason phrase',
        );
        return;
      }
      if (status === 401 && route.credential) {
        done();
        ures.resume();
        this.deps.log.warn(
          { event: 'http_proxy.upstream_refused_credential', route: route.name, upstream: to.text },
          `the upstream of route ${route.name} refused the injected credential`,
        );
        this.fail(
          req,
          res,
          route,
          502,
          'UPSTREAM_AUTH_REFUSED',
          "the upstream refused the front door's credential",
        );
        return;
      }
      const out = responseHeaders(ures.rawHeaders);
      if (cfg.docker_registry && ures.headers['docker-distribution-api-version'] === undefined)
        out.push(API_VERSION_HEADER, API_VERSION);
      try {
        res.writeHead(status, ures.statusMessage, out);
      } catch (err) {
        done();
        up.destroy();
        // writeHead validates before it sends anything: the caller can still get a clean 502.
        res.removeHeader('content-length');
        this.badResponse(req, res, route, (err as Error).message);
        return;
      }
      ures.on('data', touch);
      ures.pipe(res);
      ures.on('error', () => res.destroy());
      ures.on('aborted', () => res.destroy());
    }
  }

  private badResponse(req: Req, res: Res, route: PreparedRoute, what: string): void {
    const msg = `the upstream of route ${route.name} sent a malformed response (${what})`;
    this.refuse('upstream_bad_response', req, route, msg);
    this.deps.log.warn(
      {
        event: 'http_proxy.upstream_bad_response',
        route: route.name,
        upstream: route.cfg.to.text,
        problem: what,
      },
      msg,
    );
    this.fail(req, res, route, 502, 'UPSTREAM_BAD_RESPONSE', 'the upstream sent a malformed response');
  }

  private upstreamFailed(req: Req, res: Res, route: PreparedRoute, err: Error): void {
    const to = route.cfg.to.text;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (isTetherError(err)) {
      this.deps.log.info(
        { event: 'http_proxy.upstream_unavailable', route: route.name, upstream: to, code: err.code },
        err.message,
      );
      // 429: a tenant's connection cap or traffic quota (the caller may retry later).
      this.fail(
        req,
        res,
        route,
        err.status >= 500 || err.status === 429 ? err.status : 502,
        err.code,
        err.message,
      );
      return;
    }
    if (err instanceof UpstreamTimeout) {
      this.deps.log.warn(
        { event: 'http_proxy.upstream_timeout', route: route.name, upstream: to, phase: err.phase },
        err.message,
      );
      this.fail(
        req,
        res,
        route,
        504,
        'UPSTREAM_TIMEOUT',
        `the upstream did not answer in time (${err.phase})`,
      );
      return;
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (res.destroyed || req.destroyed) return;
    if (code?.startsWith('HPE_')) {
      this.badResponse(
        req,
        res,
        route,
        `${code}${(err as { reason?: string }).reason ? `: ${(err as { reason?: string }).reason}` : ''}`,
      );
      return;
    }
    this.deps.log.warn(
      { event: 'http_proxy.upstream_error', route: route.name, upstream: to, code: code ?? err.message },
      `route ${route.name}: upstream error ${code ?? err.message}`,
    );
    this.fail(req, res, route, 502, 'UPSTREAM_UNREACHABLE', 'the upstream could not be reached');
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

  private fail(
    req: Req,
    res: Res,
    route: PreparedRoute | undefined,
    status: number,
    code: string,
    message: string,
    extra: Record<string, string> = {},
  ): void {
    sendError(req, res, route, status, code, message, extra);
  }

  private accessLog(req: Req, res: Res, route: Route, target: RequestTarget, started: number): void {
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
          source: req.socket.remoteAddress,
        },
        'request',
      );
    });
  }
}
