/**
 * Requests to a URL route's upstream through an undici Pool: keep-alive connections reused
 * across callers, parsed by undici's llhttp without node's ClientRequest/IncomingMessage
 * streams (bench/http-proxy.ts: 1.14x node's client's requests/s, median of 8 alternating rounds).
 * Tunnel routes keep node's client, over a channel kept per caller connection (kept-channels.ts).
 */
import type http from 'node:http';
import { createRequire } from 'node:module';
import type { Dispatcher, Pool } from 'undici';
import type { Framing } from './framing.js';
import type { PreparedRoute } from './types.js';
import { type Exchange, type UpstreamForwarder, UpstreamTimeout } from './upstream-exchange.js';

/** Connections kept per URL route, as node's agent allowed sockets before. */
const POOL_CONNECTIONS = 256;

type PoolConstructor = typeof import('undici').Pool;
let PoolClass: PoolConstructor | undefined;

/**
 * The connection pool of a URL route, made by its first request; its CA (https) and connect
 * timeout come from the route. undici is loaded then, and only its Pool (about 11 MiB resident
 * against 20 MiB for its whole index with fetch and WebSocket): a gateway whose URL routes get
 * no request, or whose routes all lead into tunnels, never loads it.
 */
export class UpstreamPool {
  private pool: Pool | undefined;

  constructor(
    private readonly origin: string,
    private readonly o: { connectTimeout: number; ca?: string | Buffer },
  ) {}

  get(): Pool {
    if (this.pool) return this.pool;
    PoolClass ??= createRequire(import.meta.url)('undici/lib/dispatcher/pool.js') as PoolConstructor;
    this.pool = new PoolClass(this.origin, {
      connections: POOL_CONNECTIONS,
      pipelining: 1,
      // The forwarder's sweep times the response head and idle bodies (response_timeout, idle_timeout).
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: { timeout: this.o.connectTimeout, ...(this.o.ca !== undefined ? { ca: this.o.ca } : {}) },
    });
    return this.pool;
  }

  async destroy(): Promise<void> {
    await this.pool?.destroy();
  }
}

export interface PooledRequest {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  route: PreparedRoute;
  path: string;
  framing: Framing;
  /** From `upstreamHeaders` (`clientChunks`): the front door's framing, our Host and credential. */
  headers: string[];
}

/** Sends one caller request to a URL route's pool and passes the answer on. */
export function forwardPooled(fw: UpstreamForwarder, r: PooledRequest): void {
  const { req, res, route } = r;
  if (!route.pool) throw new Error(`route ${route.name} has no upstream pool`);
  const pool = route.pool.get();
  const clock = fw.clock;
  const start = clock.now();
  let controller: Dispatcher.DispatchController | undefined;
  /** Set once the caller has its answer from us (an error), or went away: later events change nothing. */
  let settled = false;
  let cancelled: Error | undefined;
  let bodyDone = r.framing.kind === 'none';
  let discard = false;
  const x: Exchange = {
    phase: 'connect',
    since: start,
    last: start,
    res,
    cancel: (err) => {
      cancelled ??= err;
      if (controller) controller.abort(err);
      else fail(err); // still queued or connecting: answer now, abort once it is dispatched
    },
  };
  const done = () => fw.exchanges.delete(x);
  const fail = (err: Error) => {
    done();
    if (settled) return;
    settled = true;
    fw.upstreamFailed(req, res, route, asTimeout(err, fw.cfg.connect_timeout));
  };
  const guard = <A extends unknown[]>(fn: (...a: A) => void) => fw.door.guard(req, res, route, fn);
  const stop = (err: Error) => {
    cancelled ??= err;
    settled = true;
    controller?.abort(err);
  };
  fw.exchanges.add(x);
  if (!bodyDone) {
    req.once('end', () => {
      bodyDone = true;
      if (x.phase === 'upload') {
        x.phase = 'response';
        x.since = clock.now();
      }
    });
  }
  res.on('close', () => {
    done();
    if (!res.writableFinished) stop(new Error('the caller went away'));
  });
  // A caller that goes away mid-body leaves the upstream request unfinished: never reuse it.
  req.once('aborted', () => stop(new Error('the caller went away')));
  req.once('error', (err) => stop(err));

  const handler: Dispatcher.DispatchHandler = {
    onRequestStart: guard((c: Dispatcher.DispatchController) => {
      controller = c;
      if (cancelled) {
        c.abort(cancelled);
        return;
      }
      x.phase = bodyDone ? 'response' : 'upload';
      x.since = x.last = clock.now();
      // Only now: a 'data' listener makes the body flow, and undici reads it from here on.
      if (!bodyDone)
        req.on('data', () => {
          x.last = clock.now();
        });
    }),
    onResponseStart: guard(
      (c: Dispatcher.DispatchController, status: number, _h: unknown, statusMessage?: string) => {
        if (settled || status < 200) return; // 1xx: informational, as node's client consumes them
        x.phase = 'download';
        x.last = clock.now();
        const verdict = fw.answerHead(req, res, route, status, statusMessage, rawStrings(c.rawHeaders));
        if (verdict === 'relay') return;
        settled = true;
        done();
        if (verdict === 'drop') c.abort(new Error('malformed upstream response'));
        else discard = true;
      },
    ),
    onResponseData: guard((c: Dispatcher.DispatchController, chunk: Buffer) => {
      x.last = clock.now();
      if (discard || settled) return;
      if (!res.write(chunk)) {
        c.pause();
        res.once('drain', () => c.resume());
      }
    }),
    onResponseEnd: guard(() => {
      done();
      if (!settled) res.end();
    }),
    onResponseError: guard((_c: Dispatcher.DispatchController, err: Error) => fail(err)),
  };
  try {
    pool.dispatch(
      {
        path: r.path,
        method: req.method ?? 'GET',
        // undici frames a streamed body itself (chunked when no Content-Length is given).
        headers: r.headers,
        body: r.framing.kind === 'none' ? null : req,
      },
      handler,
    );
  } catch (err) {
    fail(err as Error);
  }
}

/** undici's connect timeout is the route's connect_timeout: report it as the sweep would. */
function asTimeout(err: Error, ms: number): Error {
  return (err as { code?: string }).code === 'UND_ERR_CONNECT_TIMEOUT'
    ? new UpstreamTimeout('connect', ms)
    : err;
}

function rawStrings(raw: Dispatcher.DispatchController['rawHeaders']): string[] {
  if (!Array.isArray(raw)) return [];
  return raw.map((v) => (typeof v === 'string' ? v : v.toString('latin1')));
}
