import { z } from 'zod';
import { MAX_CIDRS, parseCidrList } from '../config/cidr.js';
import { isValidLabel } from '../core/ids.js';
import { BALANCES, parseMaxConnections, parseRate, parseTraffic } from '../core/limits.js';
import { MAX_QUOTA } from '../core/tenants.js';

/** Request and response shapes of the admin API; validation and the OpenAPI document come from these. */

export const tenantId = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9_-]{0,62}$/,
    'use 1-63 characters a-z, 0-9, "_" or "-", starting with a letter or digit',
  );

export const quota = z
  .number({ error: 'must be a whole number from 0 to 3000' })
  .int('must be a whole number from 0 to 3000')
  .min(0, 'must be a whole number from 0 to 3000')
  .max(MAX_QUOTA, 'must be a whole number from 0 to 3000');

/** A list of CIDR blocks, checked by the gateway's own parser (the message names the bad value). */
const cidrList = (what: string) =>
  z
    .array(z.string(), {
      error: `${what}: a list of address blocks such as ["203.0.113.0/24", "2001:db8::/32"]`,
    })
    .superRefine((v, ctx) => {
      try {
        parseCidrList(v, what);
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: (e as Error).message });
      }
    })
    .meta({
      description: `IPv4 and IPv6 CIDR blocks (or single addresses), at most ${MAX_CIDRS}; [] or null: anyone.`,
    });

const allowFromField = cidrList('allow_from')
  .nullable()
  .optional()
  .meta({ description: 'Callers of every front door must come from these blocks; [] or null: anyone.' });
const tunnelFromField = cidrList('tunnel_from')
  .nullable()
  .optional()
  .meta({ description: "The tenant's connectors must log in from these blocks; [] or null: anywhere." });

export const addTenantBody = z.strictObject({
  id: tenantId,
  public_key: z.string().min(1).max(16_384).optional(),
  force: z.boolean().optional(),
  quota: quota.optional(),
  allow_from: allowFromField,
  tunnel_from: tunnelFromField,
});

/** A limit value checked by its parser (the same one the CLI uses), with the parser's message. */
function limitValue<T extends z.ZodType>(schema: T, parse: (v: unknown) => unknown) {
  return schema.superRefine((v, ctx) => {
    try {
      parse(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
    }
  });
}

const rate = (what: string) =>
  limitValue(
    z
      .union([z.number(), z.string(), z.null()], {
        error: 'a rate: bytes per second, or text such as "10MB/s"; 0, "off" or null for no cap',
      })
      .meta({
        description: 'Bytes per second, or text such as "10MB/s", "100Mbit/s"; 0/"off"/null: no cap.',
      }),
    (v) => parseRate(v, what),
  );

export const changeTenantBody = z
  .strictObject({
    quota: quota.optional(),
    /** Scope the limits below to one repository ("<group>/<repo>") instead of the whole tenant. */
    repository: z
      .string()
      .refine(isValidLabel, 'use the repository label <group>/<repo>')
      .optional()
      .meta({ description: 'Apply the limits in this body to one repository ("<group>/<repo>").' }),
    balance: z
      .enum(BALANCES, { error: `use ${BALANCES.join(' or ')}` })
      .optional()
      .meta({ description: "How new connections are spread over a repository's connectors." }),
    bandwidth: rate('bandwidth').optional().meta({ description: 'Both directions at once.' }),
    bandwidth_up: rate('bandwidth_up')
      .optional()
      .meta({ description: 'Towards the repository (what callers send).' }),
    bandwidth_down: rate('bandwidth_down')
      .optional()
      .meta({ description: 'From the repository (what callers receive).' }),
    max_connections: limitValue(
      z.union([z.number(), z.string(), z.null()], {
        error: 'a whole number; 0, "off" or null for no cap',
      }),
      parseMaxConnections,
    )
      .optional()
      .meta({ description: 'Concurrent connections; 0/"off"/null: no cap.' }),
    traffic: limitValue(
      z.union([z.string(), z.null(), z.strictObject({ limit: z.number(), period: z.string().optional() })], {
        error: 'a quota such as "500GB/month" or "10GB/30d", or {limit, period}; "off" or null for none',
      }),
      parseTraffic,
    )
      .optional()
      .meta({ description: 'Traffic quota, e.g. "500GB/month" or "10GB/30d"; "off"/null: none.' }),
    allow_from: allowFromField,
    tunnel_from: tunnelFromField,
  })
  .superRefine((b, ctx) => {
    if (b.bandwidth !== undefined && (b.bandwidth_up !== undefined || b.bandwidth_down !== undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['bandwidth'],
        message: 'give either bandwidth (both directions) or bandwidth_up/bandwidth_down',
      });
    }
    if (b.repository !== undefined && b.tunnel_from !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['tunnel_from'],
        message: 'tunnel_from applies to the whole tenant: change it without "repository"',
      });
    }
    if (b.repository !== undefined && (b.quota !== undefined || b.balance !== undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['repository'],
        message: 'quota and balance apply to the whole tenant: change them without "repository"',
      });
    }
  });

export type ChangeTenantBody = z.output<typeof changeTenantBody>;

export const addKeyBody = z.strictObject({ public_key: z.string().min(1).max(16_384) });

export const enrollmentBody = z
  .strictObject({
    ttl_hours: z
      .number()
      .positive()
      .max(24 * 30)
      .optional(),
  })
  .optional();

export const sessionView = z.object({
  id: z.string(),
  source: z.string(),
  since: z.string(),
  fingerprint: z.string(),
  agent: z.string(),
});

export const limitsView = z.object({
  balance: z.enum(BALANCES),
  bandwidth_up: z.number().nullable(),
  bandwidth_down: z.number().nullable(),
  max_connections: z.number().nullable(),
  traffic_limit: z.number().nullable(),
  traffic_period: z.string().nullable(),
});

export const repositoryLimitsView = limitsView.omit({ balance: true });

export const usageView = z.object({
  period: z.string(),
  period_start: z.string(),
  resets_at: z.string().nullable(),
  bytes_in: z.number(),
  bytes_out: z.number(),
  bytes: z.number(),
  exhausted: z.boolean(),
});

/** One connector serving a repository. */
export const endpointView = z.object({
  session: z.string(),
  source: z.string(),
  since: z.string(),
  agent: z.string(),
  connections: z.number(),
  state: z.enum(['online', 'withdrawn']),
  reason: z.string().nullable(),
  /** Where this connector sends the repository's connections, when it said so. */
  destination: z.string().nullable().optional(),
  /** The cluster member it is connected to (null on a single gateway). */
  node: z.string().nullable(),
});

export const forwardView = z.object({
  label: z.string(),
  port: z.number(),
  state: z.enum(['online', 'withdrawn', 'offline']),
  service: z.string().nullable(),
  scheme: z.string().nullable(),
  destination: z.string().nullable(),
  path: z.string().nullable(),
  connections: z.number(),
  connectors: z.number(),
  node: z.string().nullable(),
  /** Each connector serving it (on this member; other members' as their node and count). */
  endpoints: z.array(endpointView).optional(),
  /** The repository's own limits, when it has any. */
  limits: repositoryLimitsView.nullable().optional(),
  /** The repository's own source-address allowlist (null: none of its own). */
  allow_from: z.array(z.string()).nullable().optional(),
  /** Bytes this period. */
  usage: usageView.optional(),
});

export const tenantView = z.object({
  id: z.string(),
  quota: z.number(),
  in_use: z.number(),
  created_at: z.string(),
  updated_at: z.string(),
  keys: z.array(z.object({ fingerprint: z.string(), created_at: z.string() })),
  sessions: z.array(sessionView),
  forwards: z.array(forwardView),
  /** Traffic limits (null = none) and how new connections are spread over connectors. */
  limits: limitsView.optional(),
  /** Bytes this period (the quota's, else the calendar month, UTC), all repositories together. */
  usage: usageView.optional(),
  /** Connections open through this gateway right now. */
  connections: z.number().optional(),
  /** Source-address allowlist of every front door (null: anyone). */
  allow_from: z.array(z.string()).nullable().optional(),
  /** Where the tenant's connectors may log in from (null: anywhere). */
  tunnel_from: z.array(z.string()).nullable().optional(),
});

export type TenantView = z.infer<typeof tenantView>;
export type ForwardView = z.infer<typeof forwardView>;

/* Response shapes (the OpenAPI document describes every answer with these; tests parse real answers). */

export const errorBody = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    details: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  }),
});

export const healthResponse = z.object({
  status: z.literal('ok'),
  version: z.string(),
  node: z.string().nullable(),
});

export const tenantListResponse = z.object({ tenants: z.array(tenantView) });

export const tenantResponse = z.object({ tenant: tenantView });

export const addTenantResponse = z.object({
  tenant: tenantView,
  created: z.boolean(),
  fingerprint: z.string(),
  public_key: z.string(),
  private_key: z.string().optional(),
});

export const addKeyResponse = z.object({ fingerprint: z.string() });

export const enrollmentResponse = z.object({ token: z.string(), expires_at: z.string() });

export const repositoryView = forwardView.extend({ repository: z.string(), address: z.string() });

export const repositoriesResponse = z.object({
  tenant: z.string(),
  groups: z.array(
    z.object({
      group: z.string(),
      key: z.string(),
      key_created_at: z.string(),
      repositories: z.array(repositoryView),
    }),
  ),
  ungrouped: z.array(forwardView),
});

export const groupKeyResponse = z.object({
  tenant: z.string(),
  group: z.string(),
  key: z.string(),
  key_created_at: z.string(),
});
