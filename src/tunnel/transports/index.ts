/**
 * The tunnel's TLS and WebSocket transports (gateway.yaml `tunnel.tls`, `tunnel.websocket`):
 * the same SSH server behind a TLS listener and behind a WebSocket path of an HTTPS listener.
 * When both name the same listen address (not port 0), one port serves both (raw TLS and
 * WebSocket told apart by the first bytes after the handshake); when `tunnel.tls` is set, TLS that arrives on
 * the plain SSH port is accepted too.
 */
import type { AddressInfo, Socket } from 'node:net';
import type { GatewayConfig } from '../../config/gateway.js';
import type { Component } from '../../core/component.js';
import { TetherError } from '../../errors/index.js';
import type { Logger } from '../../log/index.js';
import type { ListenFn } from '../listen.js';
import { type TlsListenerOptions, type TunnelAcceptor, TunnelTlsListener } from './tls-listener.js';

export { classify, peekFirstChunk, routePlainPort } from './sniff.js';
export { TunnelTlsListener } from './tls-listener.js';

/** The settings the transports read: `tunnel.tls`, `tunnel.websocket`, `tunnel.auth_timeout`. */
export type TunnelTransportsConfig = Pick<GatewayConfig['tunnel'], 'tls' | 'websocket' | 'auth_timeout'>;

/** What the transports use of the running gateway; the composition root (src/gateway/) passes it. */
export interface TunnelTransportsDeps {
  /** The SSH server the transports hand their connections to (and TLS on its plain port to them). */
  tunnel: TunnelAcceptor & {
    tlsOnSshPort: ((socket: Socket) => void) | undefined;
    /** Opens a listener as the SSH server opens its own port (see ListenFn). */
    openListener?: ListenFn;
  };
  log: Logger;
}

function fmt(a: AddressInfo): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** Both transports of one gateway; started once, whichever component starts first. */
class TunnelTransports {
  private readonly listeners: TunnelTlsListener[] = [];
  private started: Promise<void> | undefined;
  private stopped: Promise<void> | undefined;
  readonly addresses: { tls?: string; websocket?: string } = {};

  constructor(
    private readonly cfg: TunnelTransportsConfig,
    private readonly ctx: TunnelTransportsDeps,
  ) {}

  start(): Promise<void> {
    this.started ??= this.doStart();
    return this.started;
  }

  private async open(opts: TlsListenerOptions): Promise<{ listener: TunnelTlsListener; addr: string }> {
    const listener = new TunnelTlsListener(opts, {
      tunnel: this.ctx.tunnel,
      log: this.ctx.log.child({ component: 'tunnel_transports' }),
      ...(this.ctx.tunnel.openListener ? { listen: this.ctx.tunnel.openListener.bind(this.ctx.tunnel) } : {}),
    });
    let a: AddressInfo;
    try {
      a = await listener.listen();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e);
      throw new TetherError(
        'LISTEN_FAILED',
        `${opts.configPath}.listen: cannot listen on ${opts.listen.host}:${opts.listen.port} (${code})`,
        { status: 500, cause: e },
      );
    }
    this.listeners.push(listener);
    return { listener, addr: fmt(a) };
  }

  private async doStart(): Promise<void> {
    const { tls: t, websocket: w, auth_timeout } = this.cfg;
    // One port for both when they name the same address ("0", any free port, gives each its own).
    const shared =
      !!t && !!w && t.listen.port !== 0 && t.listen.host === w.listen.host && t.listen.port === w.listen.port;
    if (shared && (t.cert !== w.cert || t.key !== w.key)) {
      throw new TetherError(
        'CONFIG_INVALID',
        `tunnel.tls and tunnel.websocket share the listen address ${t.listen.host}:${t.listen.port}, ` +
          'so they share one certificate: give both the same cert and key',
        { status: 400 },
      );
    }
    if (t) {
      const { listener, addr } = await this.open({
        listen: t.listen,
        cert: t.cert,
        key: t.key,
        configPath: 'tunnel.tls',
        raw: true,
        websocketPath: shared ? w.path : undefined,
        handshakeTimeout: auth_timeout,
      });
      this.addresses.tls = `tls://${addr}`;
      if (shared) this.addresses.websocket = `wss://${addr}${w.path}`;
      this.ctx.tunnel.tlsOnSshPort = (s) => listener.takeTls(s);
    }
    if (w && !shared) {
      const { addr } = await this.open({
        listen: w.listen,
        cert: w.cert,
        key: w.key,
        configPath: 'tunnel.websocket',
        raw: false,
        websocketPath: w.path,
        handshakeTimeout: auth_timeout,
      });
      this.addresses.websocket = `wss://${addr}${w.path}`;
    }
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.ctx.tunnel.tlsOnSshPort = undefined;
      await Promise.all(this.listeners.map((l) => l.close()));
    })();
    return this.stopped;
  }
}

/** One pair of transports per SSH server (so per gateway). */
const perGateway = new WeakMap<TunnelTransportsDeps['tunnel'], TunnelTransports>();

function transportsOf(cfg: TunnelTransportsConfig, deps: TunnelTransportsDeps): TunnelTransports {
  let t = perGateway.get(deps.tunnel);
  if (!t) {
    t = new TunnelTransports(cfg, deps);
    perGateway.set(deps.tunnel, t);
  }
  return t;
}

/** `tunnel.tls`: SSH inside TLS. Prints "tls://host:port". */
export function tlsTunnelComponent(
  cfg: TunnelTransportsConfig,
  deps: TunnelTransportsDeps,
): Component | undefined {
  if (!cfg.tls) return undefined;
  const t = transportsOf(cfg, deps);
  return {
    name: 'tunnel_tls',
    start: async () => {
      await t.start();
      return t.addresses.tls ?? '';
    },
    stop: () => t.stop(),
    // closing the TLS and WebSocket listeners leaves the sessions they carry alone
    drain: () => t.stop(),
  };
}

/** `tunnel.websocket`: SSH inside a WebSocket on an HTTPS listener. Prints "wss://host:port/path". */
export function websocketTunnelComponent(
  cfg: TunnelTransportsConfig,
  deps: TunnelTransportsDeps,
): Component | undefined {
  if (!cfg.websocket) return undefined;
  const t = transportsOf(cfg, deps);
  return {
    name: 'tunnel_websocket',
    start: async () => {
      await t.start();
      return t.addresses.websocket ?? '';
    },
    stop: () => t.stop(),
    drain: () => t.stop(),
  };
}
