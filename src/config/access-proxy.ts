import { z } from 'zod';
import { proxyProtocolFields } from './proxy-protocol.js';
import { duration, listenAddr } from './schema-helpers.js';

export const accessProxySchema = z.strictObject({
  listen: listenAddr.default({ host: '127.0.0.1', port: 3128 }),
  /** PROXY protocol (behind a TCP load balancer). */
  ...proxyProtocolFields,
  /** Idle clients that send no complete request head within this time are closed. */
  header_timeout: duration.default(10_000),
  /** Wrong-key attempts per source address within `failure_window` before refusals (429) start. */
  max_failures: z.number().int().min(1).default(10),
  /** The window wrong keys are counted in, and how long a blocked address stays blocked. */
  failure_window: duration.default(60_000),
  /**
   * Plain (absolute-form) requests to an https repository: the gateway speaks TLS to it and
   * checks its certificate against the system CAs and the destination host name. `false`
   * skips that check (internal CAs, self-signed certificates).
   */
  verify_upstream_tls: z.boolean().default(true),
});
export type AccessProxyConfig = z.output<typeof accessProxySchema>;
