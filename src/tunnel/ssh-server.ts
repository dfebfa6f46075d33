/**
 * The one way Tether builds an ssh2 SSH server: the tunnel port (tunnel/server.ts), the SSH front
 * door (frontdoor/ssh-proxy/server.ts) and peer mode (peer/tunnel-server.ts). Host key, algorithms
 * (config/ssh-algorithms.ts: a hardened OpenSSH server's lists by default), identification,
 * keepalive and buffer sizes are set here; sockets are accepted by their owner's listener and
 * handed over with `inject` (ssh2's `injectSocket`).
 */
import type { Duplex } from 'node:stream';
import ssh2, { type Connection } from 'ssh2';
import { type SshAlgorithmLists, toSsh2Algorithms } from '../config/ssh-algorithms.js';

const { Server } = ssh2;

export interface SshServerOptions {
  /** Host private key (OpenSSH or PEM). */
  hostKey: string | Buffer;
  /** Algorithms offered; default: the hardened lists of config/ssh-algorithms.ts. */
  algorithms?: SshAlgorithmLists;
  /** Software version in the identification string ("Tether_1.2.3"); default: ssh2's. */
  ident?: string;
  /** ms between keepalives, and how many may go unanswered before the client is dropped. */
  keepaliveInterval: number;
  keepaliveCountMax: number;
  /** Stream buffer size of the connection (ssh2's default when absent). */
  highWaterMark?: number;
  /** Further ssh2 server settings of one owner (the tunnel's adaptive channel windows). */
  extra?: Record<string, unknown>;
}

export interface ClientInfo {
  ip: string;
  port: number;
}

/** An ssh2 server that listens on nothing itself: its owner accepts sockets and injects them. */
export interface SshServer {
  /** Runs the SSH protocol on an accepted stream (TCP socket, TLS socket or WebSocket stream). */
  inject(socket: Duplex): void;
}

export function createSshServer(
  opts: SshServerOptions,
  onClient: (client: Connection, info: ClientInfo) => void,
): SshServer {
  const config: Record<string, unknown> = {
    hostKeys: [opts.hostKey],
    algorithms: toSsh2Algorithms(opts.algorithms),
    keepaliveInterval: opts.keepaliveInterval,
    keepaliveCountMax: opts.keepaliveCountMax,
  };
  if (opts.ident !== undefined) config.ident = opts.ident;
  if (opts.highWaterMark !== undefined) config.highWaterMark = opts.highWaterMark;
  Object.assign(config, opts.extra);
  const server = new Server(config as unknown as ConstructorParameters<typeof Server>[0], () => {});
  server.on('connection', (client: Connection, info: ClientInfo) => onClient(client, info));
  const injectable = server as unknown as { injectSocket(s: Duplex): void };
  return { inject: (socket) => injectable.injectSocket(socket) };
}
