/**
 * The one way Tether's own SSH clients (the connector's session in tunnel/client.ts, peer mode's
 * link in peer/remote-link.ts) configure ssh2's Client: the hardened algorithm lists of
 * config/ssh-algorithms.ts and the keepalive of DESIGN (every 15 s, dead after 3 missed).
 */
import type { ConnectConfig } from 'ssh2';
import { type SshAlgorithmLists, toSsh2Algorithms } from '../config/ssh-algorithms.js';

export const KEEPALIVE_INTERVAL_MS = 15_000;
export const KEEPALIVE_COUNT_MAX = 3;

export interface SshClientOptions {
  username: string;
  /** Handshake and authentication, ms. */
  readyTimeout: number;
  /** Decides whether the server's host key is trusted. */
  hostVerifier: (key: Buffer) => boolean;
  privateKey?: string | Buffer;
  /** Software version in the identification string; default: ssh2's. */
  ident?: string;
  algorithms?: SshAlgorithmLists;
  keepaliveInterval?: number;
  keepaliveCountMax?: number;
}

export function sshClientConfig(o: SshClientOptions): ConnectConfig {
  const config: ConnectConfig = {
    username: o.username,
    algorithms: toSsh2Algorithms(o.algorithms),
    keepaliveInterval: o.keepaliveInterval ?? KEEPALIVE_INTERVAL_MS,
    keepaliveCountMax: o.keepaliveCountMax ?? KEEPALIVE_COUNT_MAX,
    readyTimeout: o.readyTimeout,
    hostVerifier: o.hostVerifier,
  };
  if (o.privateKey !== undefined) config.privateKey = o.privateKey;
  if (o.ident !== undefined) config.ident = o.ident;
  return config;
}
