import { z } from 'zod';
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

export const addTenantBody = z.strictObject({
  id: tenantId,
  public_key: z.string().min(1).max(16_384).optional(),
  force: z.boolean().optional(),
  quota: quota.optional(),
});

export const changeTenantBody = z.strictObject({
  quota: quota.optional(),
});

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
