/**
 * A connection the gateway sends (a `forwarded-tcpip` channel): only a label from this
 * connector's own config is dialed, at the destination that config names (never one the
 * gateway names); the bytes are carried both ways and counted on its repository.
 */
import type { Socket } from 'node:net';
import { destinationOf } from '../config/uri.js';
import type { Logger } from '../log/index.js';
import type { IncomingConnection } from '../tunnel/client.js';
import { buildProxyHeader } from '../tunnel/proxy-header-out.js';
import { relayChannel } from './relay.js';
import type { Repo } from './repository.js';

export interface IncomingHooks {
  log: Logger;
  /** Dials the repository's destination (a managed one at an address its policy allows now). */
  dial: (r: Repo) => Promise<Socket>;
  /** The gateway side was accepted: the connection is carried now. */
  opened: (r: Repo) => void;
  /**
   * The connection is over, once for each one given to serveIncoming: it ended, or it was refused
   * (a label not served here, a destination that did not answer).
   */
  closed: () => void;
  /** The destination did not answer (the connection was refused to the gateway). */
  unreachable: (r: Repo, reason: string) => void;
}

/** Serves one connection from the gateway for `r`, the repository its label names here (if any). */
export function serveIncoming(c: IncomingConnection, r: Repo | undefined, h: IncomingHooks): void {
  if (!r) {
    // Only labels from our own config are ever dialed.
    h.log.warn(
      { event: 'connector.unknown_label', label: c.label, port: c.port },
      'refused a connection for a label this connector does not serve',
    );
    c.reject();
    h.closed();
    return;
  }
  const dest = destinationOf(r.cfg);
  h.dial(r).then(
    (sock) => carry(r, c, sock, dest, h.log, () => h.opened(r), h.closed),
    (e: Error) => {
      c.reject();
      h.closed();
      r.dialFailures++;
      h.unreachable(r, `destination unreachable: ${dest}: ${e.message}`);
    },
  );
}

/**
 * Carries a connection from the gateway to `sock`, the destination `dest` the connector
 * dialed for it, counting it on `r`; `accepted` runs once the gateway side is accepted. When
 * the gateway side is gone already, the socket is closed.
 */
export function carry(
  r: Repo,
  c: IncomingConnection,
  sock: Socket,
  dest: string,
  log: Logger,
  accepted: () => void,
  closed?: () => void,
): void {
  let channel: ReturnType<IncomingConnection['accept']>;
  try {
    channel = c.accept();
  } catch {
    sock.destroy();
    closed?.();
    return;
  }
  accepted();
  r.connections++;
  r.totalConnections++;
  const handle = {
    close: () => {
      sock.destroy();
      channel.destroy();
    },
  };
  r.live.add(handle);
  // the destination reads the cloud caller's address first (proxy_protocol: v1|v2)
  if (r.cfg.proxyProtocol) {
    sock.write(
      buildProxyHeader(
        r.cfg.proxyProtocol,
        { address: c.info.srcIP, port: c.info.srcPort },
        { address: sock.remoteAddress ?? '', port: sock.remotePort ?? r.cfg.port },
      ),
    );
  }
  log.debug(
    {
      event: 'connector.connection',
      label: c.label,
      destination: dest,
      from: `${c.info.srcIP}:${c.info.srcPort}`,
    },
    'connection',
  );
  relayChannel(channel, sock, {
    onBytes: (toDest, fromDest) => {
      r.bytesIn += toDest;
      r.bytesOut += fromDest;
    },
    done: (t) => {
      closed?.();
      r.connections--;
      r.live.delete(handle);
      if (r.live.size === 0) r.onIdle?.();
      log.debug(
        {
          event: 'connector.connection_closed',
          label: c.label,
          bytesIn: t.toDestination,
          bytesOut: t.fromDestination,
          error: t.error?.message,
        },
        'connection closed',
      );
    },
  });
}
