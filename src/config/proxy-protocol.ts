import { z } from 'zod';
import type { FieldProblem } from '../errors/index.js';
import { parseCidrList } from './cidr.js';
import { duration } from './schema-helpers.js';

/**
 * `proxy_protocol` and `trusted_proxies`, the same two keys on every listener that can sit behind
 * a TCP load balancer (tunnel, forwards, access_proxy, http_proxy, ssh_proxy), and the gateway-wide
 * bounds of reading a header (`proxy_header`).
 */
export const proxyProtocolFields = {
  /** off (default): no header; optional: a trusted proxy may send one; required: every connection must. */
  proxy_protocol: z
    .enum(['off', 'optional', 'required'], { error: 'use off, optional or required' })
    .default('off'),
  /** CIDR blocks of the load balancers whose PROXY headers are believed. */
  trusted_proxies: z
    .array(z.string(), { error: 'a list of address blocks such as ["10.0.0.0/8"]' })
    .superRefine((v, ctx) => {
      try {
        parseCidrList(v, 'trusted_proxies');
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: (e as Error).message });
      }
    })
    .default([]),
};

export interface ProxyProtocolListener {
  proxy_protocol: 'off' | 'optional' | 'required';
  trusted_proxies: string[];
}

export const proxyHeaderSchema = z
  .strictObject({
    /** A PROXY header must arrive within this time of the connection. */
    timeout: duration.default(5_000),
    /** Largest header accepted (v2 with TLVs); v1 is at most 107 bytes anyway. */
    max_bytes: z.number().int().min(108).max(65_551).default(1_536),
    /** Connections still sending their header, per listener. */
    max_pending: z.number().int().min(1).default(256),
  })
  .default({ timeout: 5_000, max_bytes: 1_536, max_pending: 256 });

/** proxy_protocol on with no trusted_proxies is a mistake: every header would be refused. */
export function proxyProtocolProblems(
  listeners: Record<string, ProxyProtocolListener | undefined>,
): FieldProblem[] {
  const out: FieldProblem[] = [];
  for (const [path, l] of Object.entries(listeners)) {
    if (l && l.proxy_protocol !== 'off' && l.trusted_proxies.length === 0) {
      out.push({
        path: `${path}.trusted_proxies`,
        message: `proxy_protocol: ${l.proxy_protocol} needs the load balancers' addresses in trusted_proxies`,
      });
    }
  }
  return out;
}
