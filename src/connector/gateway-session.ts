/**
 * How the connector opens its session with the gateway: the options of the SSH client
 * session from connect.yaml, the key and the transport, with the gateway's host key checked
 * against the pinned fingerprint or known_hosts (trusted on first use, which is logged); and
 * the lines the connector logs when a session opens or cannot be opened.
 */
import { join } from 'node:path';
import { type ConnectConfig, gatewayText } from '../config/connect.js';
import type { Logger } from '../log/index.js';
import type { HostKeyDecision, TunnelClientOptions, TunnelSession } from '../tunnel/client.js';
import type { GatewayTransport } from '../tunnel/transports/client.js';
import type { LoadedKey } from './key-file.js';
import { checkHostKey } from './known-hosts.js';

/** The transport (TCP to the proxy, TLS, WebSocket upgrade) must be up within this time. */
const TRANSPORT_TIMEOUT_MS = 15_000;

export interface GatewaySessionParts {
  cfg: ConnectConfig;
  key: LoadedKey;
  transport: GatewayTransport;
  /** e.g. "tether-connector/0.1.0" */
  agent: string;
  log: Logger;
  /** The fingerprint of the host key the gateway showed (whether or not it was trusted). */
  onFingerprint: (fingerprint: string) => void;
}

export function gatewaySessionOptions(p: GatewaySessionParts): TunnelClientOptions {
  const { cfg, key, transport, log } = p;
  const gw = gatewayText(cfg.gateway, cfg.transport);
  return {
    host: cfg.gateway.host,
    port: cfg.gateway.port,
    gatewayLabel: gw,
    dial: transport.dial ? () => transport.dial!(TRANSPORT_TIMEOUT_MS) : undefined,
    username: cfg.tenant!,
    privateKey: key.privateKey,
    keyFingerprint: key.fingerprint,
    agent: p.agent,
    keepaliveInterval: cfg.keepaliveInterval,
    keepaliveCountMax: cfg.keepaliveCountMax,
    maxWindow: cfg.maxWindow,
    logger: log,
    verifyHostKey: gatewayHostKeyVerifier(cfg, (fingerprint, learned) => {
      p.onFingerprint(fingerprint);
      if (!learned) return;
      log.warn(
        {
          event: 'connector.host_key_learned',
          gateway: gw,
          fingerprint,
          knownHosts: join(cfg.stateDir, 'known_hosts'),
        },
        `trusting the gateway's host key on first use: ${fingerprint} (pin it with gateway_fingerprint)`,
      );
    }),
  };
}

/**
 * Checks the gateway's host key against connect.yaml's pinned fingerprint, else the state dir's
 * known_hosts (trusted on first use). `checked` hears the fingerprint shown, and whether it was
 * learned just now.
 */
export function gatewayHostKeyVerifier(
  cfg: ConnectConfig,
  checked?: (fingerprint: string, learned: boolean) => void,
): (blob: Buffer) => HostKeyDecision {
  return (blob) => {
    const v = checkHostKey(
      {
        host: cfg.gateway.host,
        port: cfg.gateway.port,
        pinned: cfg.gatewayFingerprint,
        pinnedSource: cfg.file,
        knownHostsFile: join(cfg.stateDir, 'known_hosts'),
      },
      blob,
    );
    checked?.(v.fingerprint, v.ok && v.learned === true);
    return v.ok
      ? { ok: true, fingerprint: v.fingerprint }
      : { ok: false, fingerprint: v.fingerprint, error: v.error };
  };
}

/** The line the connector logs once a session is up. */
export function logConnected(
  log: Logger,
  gw: string,
  transport: GatewayTransport,
  session: TunnelSession,
  tenant: string | undefined,
): void {
  log.info(
    {
      event: 'connector.connected',
      gateway: gw,
      route: transport.route.text,
      fingerprint: session.hostFingerprint,
      tenant: session.welcome?.tenant ?? tenant,
      quota: session.welcome?.quota ?? null,
      gatewayVersion: session.welcome?.gateway,
    },
    `connected to the gateway ${gw} (${session.hostFingerprint}); route: ${transport.route.text}`,
  );
}

/** The line the connector logs when its session ended and it reconnects after `retryInMs`. */
export function logDisconnected(log: Logger, gw: string, why: string, retryInMs: number): void {
  log.warn({ event: 'connector.disconnected', gateway: gw, retryInMs }, `lost the gateway: ${why}`);
}

/** The line the connector logs when a session could not be opened and it retries after `retryInMs`. */
export function logConnectFailed(
  log: Logger,
  gw: string,
  err: { code: string; message: string },
  retryInMs: number,
  attempt: number,
): void {
  log.warn(
    { event: 'connector.connect_failed', gateway: gw, code: err.code, retryInMs, attempt },
    err.message,
  );
}
