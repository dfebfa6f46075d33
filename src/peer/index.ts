import { randomInt } from 'node:crypto';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { formatHostPort, type HostPort } from '../config/host-port.js';
import { type Clock, systemClock } from '../core/clock.js';
import { TetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import { createApiHandler } from './api.js';
import { ExposureManager } from './exposures.js';
import { allEmpty } from './open-connections.js';
import type { PeerOptions } from './options.js';
import { type TUNNEL_BOUNDS, TunnelServer } from './tunnel-server.js';

export { formatHostPort, type HostPort, parseHostPort } from '../config/host-port.js';
export { generateCa, generateLeaf, writeCa, writeLeaf } from './certs.js';
export { type ExposeSpec, parseExposeRequest } from './expose-request.js';
export type { ExposureStatus, ExposureView } from './exposures.js';
export {
  DEFAULT_HTTP_BIND,
  DEFAULT_TUNNEL_BIND,
  LOG_LEVELS,
  type PeerOptions,
  type PeerOptionsInput,
  parseLogLevel,
  resolvePeerOptions,
} from './options.js';

export interface PeerDeps {
  logger: Logger;
  clock?: Clock;
  /** [0, 1), for backoff jitter. */
  random?: () => number;
  /** How long POST /expose waits for a first outcome (default 5 s). */
  settleTimeoutMs?: number;
  /** The most exposures this peer keeps (MAX_EXPOSURES unless given). */
  maxExposures?: number;
  /** The tunnel port's bounds (TUNNEL_BOUNDS unless given; tests make them small). */
  tunnelBounds?: Partial<typeof TUNNEL_BOUNDS>;
}

/** What a draining stop did. */
export interface PeerDrainResult {
  /** Connections open when the drain began. */
  open: number;
  /** Connections still open at the timeout (cut by the stop that follows). */
  cut: number;
  durationMs: number;
}

export interface PeerDaemon {
  /** Where the tunnel port listens (the address other peers use as remote_connector_addr). */
  readonly tunnelAddress: HostPort;
  /** Base URL of the HTTP API. */
  readonly apiUrl: string;
  readonly manager: ExposureManager;
  /**
   * A draining stop: takes nothing new (the API and every listener close, remote peers stop
   * listening for us, new connections are refused), lets the open connections finish within
   * `timeoutMs`, then stops, cutting what is left. stop() during a drain cuts at once.
   */
  drain(timeoutMs: number): Promise<PeerDrainResult>;
  stop(): Promise<void>;
}

function listenError(flag: string, bind: HostPort, e: NodeJS.ErrnoException): TetherError {
  const where = formatHostPort(bind);
  const why =
    e.code === 'EADDRINUSE'
      ? 'the address is already in use'
      : e.code === 'EACCES'
        ? 'permission denied'
        : e.code === 'EADDRNOTAVAIL'
          ? 'not an address of this machine'
          : e.message;
  return new TetherError('PEER_LISTEN_FAILED', `cannot listen on ${flag} ${where}: ${why}`, {
    status: 400,
    cause: e,
  });
}

function urlHost(a: AddressInfo): string {
  const host = a.address === '::' || a.address === '0.0.0.0' ? 'localhost' : a.address;
  return a.family === 'IPv6' && host !== 'localhost' ? `[${host}]` : host;
}

/**
 * Starts a peer: the tunnel port other peers dial, and the HTTP API that creates exposures.
 * Everything is built here and torn down by stop(); nothing is global.
 */
export async function startPeer(options: PeerOptions, deps: PeerDeps): Promise<PeerDaemon> {
  const log = deps.logger;
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? (() => randomInt(0, 2 ** 32) / 2 ** 32);
  const tls = options.tls;
  if (tls) {
    log.info({ cert: tls.subject }, 'mTLS on: peers must present a certificate chained to --root-cert-path');
  } else {
    log.warn(
      'PLAIN MODE: the tunnel port accepts any peer without authentication or encryption, and the ' +
        'HTTP API has no authentication. Use it only on a trusted network; pass --root-cert-path, ' +
        '--server-cert-path and --server-key-path for mTLS.',
    );
  }

  const tunnel = new TunnelServer({ logger: log, tls, clock, bounds: deps.tunnelBounds });
  let tunnelAddress: HostPort;
  try {
    tunnelAddress = await tunnel.listen(options.tunnelBind);
  } catch (e) {
    await tunnel.close().catch(() => {});
    throw listenError('--tunnel-bind', options.tunnelBind, e as NodeJS.ErrnoException);
  }
  log.info({ address: formatHostPort(tunnelAddress), tls: tls !== undefined }, 'tunnel listening');

  const manager = new ExposureManager({
    logger: log,
    clock,
    random,
    tls,
    settleTimeoutMs: deps.settleTimeoutMs,
    maxExposures: deps.maxExposures,
  });
  const handler = createApiHandler(manager, log);
  const http: HttpServer = tls
    ? createHttpsServer({ cert: tls.cert, key: tls.key }, handler)
    : createHttpServer(handler);
  const apiSockets = new Set<Socket>();
  http.on('connection', (s: Socket) => {
    apiSockets.add(s);
    s.on('close', () => apiSockets.delete(s));
  });
  try {
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      const { host, port } = options.httpBind;
      http.listen({ host: host === '' ? undefined : host, port }, () => {
        http.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    await tunnel.close();
    throw listenError('--http-bind', options.httpBind, e as NodeJS.ErrnoException);
  }
  const a = http.address() as AddressInfo;
  const apiUrl = `${tls ? 'https' : 'http'}://${urlHost(a)}:${a.port}`;
  log.info({ url: apiUrl }, 'api listening');
  log.info({ api: apiUrl, tunnel: formatHostPort(tunnelAddress) }, 'peer ready');

  /** Connections carried now (by exposures of this peer and for other peers). */
  const openConnections = () => manager.open.size + tunnel.open.size;
  let stopped: Promise<void> | undefined;
  let drained: Promise<PeerDrainResult> | undefined;
  let cutDrain: () => void = () => {};
  const daemon: PeerDaemon = {
    tunnelAddress,
    apiUrl,
    manager,
    drain(timeoutMs) {
      drained ??= (async () => {
        const start = clock.now();
        const open = openConnections();
        log.info(
          { event: 'peer.draining', connections: open, drain_timeout_ms: timeoutMs },
          `draining: taking nothing new; ${open} open connection(s) may finish within ${timeoutMs} ms`,
        );
        http.close();
        http.closeIdleConnections();
        tunnel.drain();
        await manager.drain();
        let timer: unknown;
        await Promise.race([
          allEmpty([manager.open, tunnel.open]),
          new Promise<void>((r) => {
            cutDrain = r;
            timer = clock.setTimeout(r, Math.max(0, timeoutMs - (clock.now() - start)));
          }),
        ]);
        clock.clearTimeout(timer);
        const cut = openConnections();
        const result = { open, cut, durationMs: clock.now() - start };
        const fields = { event: 'peer.drained', connections: open, cut, duration_ms: result.durationMs };
        if (cut > 0)
          log.warn(
            fields,
            `drain_timeout (${timeoutMs} ms) reached: cutting ${cut} connection(s) still open`,
          );
        else log.info(fields, `drained in ${result.durationMs} ms: every open connection finished`);
        await daemon.stop();
        return result;
      })();
      return drained;
    },
    stop() {
      cutDrain();
      stopped ??= (async () => {
        log.info('peer stopping');
        await manager.close();
        const closed = new Promise<void>((r) => http.close(() => r()));
        for (const s of apiSockets) s.destroy();
        await Promise.all([closed, tunnel.close()]);
        log.info('peer stopped');
      })();
      return stopped;
    },
  };
  return daemon;
}
