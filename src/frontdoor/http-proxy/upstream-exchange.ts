import http from 'node:http';
import type { Socket } from 'node:net';
import type { HttpProxyConfig, RouteTarget } from '../../config/http-proxy.js';
import { type ErrorCode, isTetherError } from '../../errors/index.js';
import { type BrokeredConnection, ConnectionBroker } from '../../tunnel/broker.js';
import { API_VERSION, API_VERSION_HEADER } from './docker-registry.js';
import type { Framing } from './framing.js';
import { type ChannelBytes, channelInUse, keptChannelAgent } from './kept-channels.js';
import { upstreamPath } from './routes.js';
import { headerCount, type RequestTarget, responseHeaders, upstreamHeaders } from './sanitize.js';
import type { FrontDoorDeps, PreparedRoute } from './types.js';
import { forwardPooled } from './upstream-pooled.js';
import { asSocket, isSafeReason } from './upstream-target.js';

type Req = http.IncomingMessage;
type Res = http.ServerResponse;

/** What the forwarder uses of the front door that owns the request. */
export interface DoorHooks {
  readonly proto: 'http' | 'https';
  guard<A extends unknown[]>(
    req: Req,
    res: Res,
    route: PreparedRoute | undefined,
    fn: (...a: A) => void,
  ): (...a: A) => void;
  fail(
    req: Req,
    res: Res,
    route: PreparedRoute | undefined,
    status: number,
    code: ErrorCode,
    message: string,
    extra?: Record<string, string>,
  ): void;
  refuse(reason: string, req: Req, route: PreparedRoute | undefined, message: string): void;
}

/** Where an upstream request is; see `sweep`. */
export interface Exchange {
  phase: 'connect' | 'upload' | 'response' | 'download';
  /** When the phase started. */
  since: number;
  /** When a body byte last moved. */
  last: number;
  res: http.ServerResponse;
  /** Ends the upstream request with this error (a timeout). */
  cancel(err: Error): void;
}

/** Requests sent once more when a kept channel failed before their answer (bodiless only). */
const RETRYABLE: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

/** What the upstream's status line and headers lead to: pass the body on, drop the connection, or read the body away. */
export type HeadVerdict = 'relay' | 'drop' | 'discard';

export class UpstreamTimeout extends Error {
  constructor(
    readonly phase: 'connect' | 'response' | 'idle',
    ms: number,
  ) {
    super(`upstream ${phase} timeout after ${ms} ms`);
  }
}

/**
 * One upstream request per caller request: framing set by the front door, the injected
 * credential, the answer checked before it is passed on, and timeouts by phase.
 */
export class UpstreamForwarder {
  /** Requests in flight upstream, watched by one coarse timer (cheaper than timers per request). */
  readonly exchanges = new Set<Exchange>();
  private sweeper?: NodeJS.Timeout;

  constructor(
    readonly cfg: HttpProxyConfig,
    deps: Pick<FrontDoorDeps, 'registry' | 'clock' | 'log' | 'broker'>,
    readonly door: DoorHooks,
  ) {
    this.deps = deps;
    // Every channel to a tenant's repository goes through the connection broker (limits, bytes,
    // lifecycle records, metrics); one is built over the registry when none is given (tests).
    this.broker =
      deps.broker ?? new ConnectionBroker({ registry: deps.registry, clock: deps.clock, log: deps.log });
  }

  private readonly deps: Pick<FrontDoorDeps, 'registry' | 'clock' | 'log'>;

  get clock(): FrontDoorDeps['clock'] {
    return this.deps.clock;
  }
  private readonly broker: Pick<ConnectionBroker, 'open'>;

  start(): void {
    const { connect_timeout, response_timeout, idle_timeout } = this.cfg;
    const every = Math.max(
      50,
      Math.min(1_000, Math.floor(Math.min(connect_timeout, response_timeout, idle_timeout) / 4)),
    );
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
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
    for (const x of this.exchanges) {
      let err: UpstreamTimeout | undefined;
      if (x.phase === 'connect' && now - x.since >= connect_timeout)
        err = new UpstreamTimeout('connect', connect_timeout);
      else if (x.phase === 'response' && now - x.since >= response_timeout)
        err = new UpstreamTimeout('response', response_timeout);
      else if ((x.phase === 'upload' || x.phase === 'download') && now - x.last >= idle_timeout)
        err = new UpstreamTimeout('idle', idle_timeout);
      if (!err) continue;
      this.exchanges.delete(x);
      x.cancel(err);
      // A caller that stopped reading after the upstream finished.
      if (x.phase === 'download') x.res.destroy();
    }
  }

  forward(
    req: Req,
    res: Res,
    route: PreparedRoute,
    target: RequestTarget,
    framing: Framing,
    upstreamHost: string,
    credential: [string, string] | undefined,
    identity?: string,
  ): void {
    const { cfg } = route;
    const to = cfg.to;
    const headers = upstreamHeaders(req.rawHeaders, {
      host: upstreamHost,
      clientAddress: req.socket.remoteAddress ?? '',
      proto: this.door.proto,
      forwardedHost: req.headers.host,
      credential,
      framing,
      method: req.method,
      clientChunks: to.kind === 'url',
    });
    const path = upstreamPath(cfg, target.path, target.query);
    if (to.kind === 'url') {
      forwardPooled(this, { req, res, route, path, framing, headers });
      return;
    }
    this.toTenant(req, res, route, { to, path, headers, framing, identity }, false);
  }

  /**
   * One request to a tenant route over the caller connection's kept channel. A bodiless GET, HEAD
   * or OPTIONS whose kept channel failed before any answer (typically: the service closed the idle
   * connection as the request left) is sent once more, on a new channel. These methods are safe,
   * which HTTP lets a client repeat, and the caller has had nothing yet.
   */
  private toTenant(
    req: Req,
    res: Res,
    route: PreparedRoute,
    r: {
      to: Extract<RouteTarget, { kind: 'tenant' }>;
      path: string;
      headers: string[];
      framing: Framing;
      identity: string | undefined;
    },
    retried: boolean,
  ): void {
    const { to, framing, identity } = r;
    const options: http.RequestOptions = {
      method: req.method,
      path: r.path,
      headers: r.headers as unknown as http.OutgoingHttpHeaders,
      setHost: false,
    };
    // The caller connection's kept channel to this route, for this identity (kept-channels.ts).
    const origin = { address: req.socket.remoteAddress ?? '127.0.0.1', port: req.socket.remotePort ?? 0 };
    options.agent = keptChannelAgent(req.socket, `${route.index}\n${identity ?? ''}`, (bytes, cb) => {
      const brokered = {
        tenant: to.tenant,
        label: to.label,
        origin,
        frontDoor: 'http_proxy' as const,
        ...(identity !== undefined ? { identity } : {}),
      };
      this.broker.open(brokered).then(
        this.door.guard(req, res, route, (conn: BrokeredConnection) => {
          conn.stream.on('data', (c: Buffer) => {
            bytes.down += c.length;
          });
          conn.stream.once('close', () =>
            conn.close(bytes.up, bytes.down, { fields: { route: route.name, method: req.method } }),
          );
          cb(null, asSocket(conn.stream), conn.stillServed);
        }),
        this.door.guard(req, res, route, (err: Error) => cb(err)),
      );
    });
    /** The channel's byte tally once the request has its channel; body bytes read before that. */
    let bytes: ChannelBytes | undefined;
    let early = 0;
    const up = http.request(options);
    const now = this.deps.clock.now();
    const x: Exchange = { phase: 'connect', since: now, last: now, res, cancel: (err) => up.destroy(err) };
    this.exchanges.add(x);
    const done = () => this.exchanges.delete(x);
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
      bytes = channelInUse(s);
      if (bytes) bytes.up += early;
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
      this.door.guard(req, res, route, (err: Error) => {
        done();
        req.unpipe(up);
        if (
          !retried &&
          up.reusedSocket &&
          framing.kind === 'none' &&
          RETRYABLE.has(req.method ?? '') &&
          x.phase !== 'download' &&
          !res.headersSent &&
          !res.destroyed &&
          !(err instanceof UpstreamTimeout) &&
          !isTetherError(err)
        ) {
          this.deps.log.debug(
            { event: 'http_proxy.retried', route: route.name, error: err.message },
            `route ${route.name}: the kept channel failed before an answer (${err.message}); sent again on a new one`,
          );
          this.toTenant(req, res, route, r, true);
          return;
        }
        this.upstreamFailed(req, res, route, err);
      }),
    );
    up.on(
      'response',
      this.door.guard(req, res, route, (ures: http.IncomingMessage) => {
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
        if (bytes) bytes.up += c.length;
        else early += c.length;
        x.last = this.deps.clock.now();
      });
      req.pipe(up);
    } else {
      up.end();
    }
  }

  /** Passes the answer of a tunnel upstream (node's client) on; see `answerHead`. */
  private relayResponse(
    req: Req,
    res: Res,
    route: PreparedRoute,
    up: http.ClientRequest,
    ures: http.IncomingMessage,
    touch: () => void,
    done: () => void,
  ): void {
    const verdict = this.answerHead(
      req,
      res,
      route,
      ures.statusCode ?? 0,
      ures.statusMessage,
      ures.rawHeaders,
    );
    if (verdict !== 'relay') {
      done();
      if (verdict === 'drop') up.destroy();
      else ures.resume();
      return;
    }
    ures.on('data', touch);
    ures.pipe(res);
    ures.on('error', () => res.destroy());
    ures.on('aborted', () => res.destroy());
  }

  /**
   * Checks the upstream's status line and headers and writes the caller's response head. A
   * status outside 200-599 (1xx answers are consumed by the HTTP client), a reason phrase with
   * control characters, or headers node will not write get the caller a 502 ('drop': the
   * upstream connection must not be reused); a 401 to an injected credential gets a 502 that
   * says so ('discard': read the body away).
   */
  answerHead(
    req: Req,
    res: Res,
    route: PreparedRoute,
    status: number,
    statusMessage: string | undefined,
    rawHeaders: readonly string[],
  ): HeadVerdict {
    const { cfg } = route;
    if (status < 200 || status > 599 || !isSafeReason(statusMessage)) {
      this.badResponse(
        req,
        res,
        route,
        status < 200 || status > 599 ? `status ${status}` : 'a control character in its reason phrase',
      );
      return 'drop';
    }
    if (status === 401 && route.credential) {
      this.deps.log.warn(
        { event: 'http_proxy.upstream_refused_credential', route: route.name, upstream: cfg.to.text },
        `the upstream of route ${route.name} refused the injected credential`,
      );
      this.door.fail(
        req,
        res,
        route,
        502,
        'UPSTREAM_AUTH_REFUSED',
        "the upstream refused the front door's credential",
      );
      return 'discard';
    }
    const out = responseHeaders(rawHeaders);
    if (cfg.docker_registry && headerCount(rawHeaders, 'docker-distribution-api-version') === 0)
      out.push(API_VERSION_HEADER, API_VERSION);
    try {
      res.writeHead(status, statusMessage, out);
    } catch (err) {
      // writeHead validates before it sends anything: the caller can still get a clean 502.
      res.removeHeader('content-length');
      this.badResponse(req, res, route, (err as Error).message);
      return 'drop';
    }
    return 'relay';
  }

  private badResponse(req: Req, res: Res, route: PreparedRoute, what: string): void {
    const msg = `the upstream of route ${route.name} sent a malformed response (${what})`;
    this.door.refuse('upstream_bad_response', req, route, msg);
    this.deps.log.warn(
      {
        event: 'http_proxy.upstream_bad_response',
        route: route.name,
        upstream: route.cfg.to.text,
        problem: what,
      },
      msg,
    );
    this.door.fail(req, res, route, 502, 'UPSTREAM_BAD_RESPONSE', 'the upstream sent a malformed response');
  }

  upstreamFailed(req: Req, res: Res, route: PreparedRoute, err: Error): void {
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
      this.door.fail(
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
      this.door.fail(
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
    // The caller went away (or has its answer). Not `req.destroyed`: node destroys a request once
    // its body has been read, and that caller still waits for an answer.
    if (res.destroyed || res.writableEnded) return;
    // node's client: code HPE_*, reason; undici's HTTPParserError: the reason in its message.
    if (code?.startsWith('HPE_') || err.name === 'HTTPParserError') {
      const reason = (err as { reason?: string }).reason ?? err.message;
      this.badResponse(req, res, route, code ? `${code}: ${reason}` : reason);
      return;
    }
    this.deps.log.warn(
      { event: 'http_proxy.upstream_error', route: route.name, upstream: to, code: code ?? err.message },
      `route ${route.name}: upstream error ${code ?? err.message}`,
    );
    this.door.fail(req, res, route, 502, 'UPSTREAM_UNREACHABLE', 'the upstream could not be reached');
  }
}
