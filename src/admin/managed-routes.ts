import { z } from 'zod';
import type { ManagedRepoService } from '../core/managed-repos.js';
import { errors } from '../errors/index.js';
import { parseBody, type Route } from './router.js';

/**
 * Admin routes of managed repositories: the operator proposes a repository for a tenant's
 * connectors, removes it, and sees what each connector made of it. The connectors decide.
 */

export const managedRepoBody = z.strictObject({
  repository: z.string().describe('<group>/<repo>: the label the repository gets'),
  uri: z.string().describe('service[+scheme]://host[:port][/path], as in connect.yaml'),
});

const connectorState = z.object({
  connector: z.string(),
  fingerprint: z.string(),
  hostname: z.string().nullable(),
  state: z.enum(['serving', 'refused', 'withdrawn', 'shadowed']),
  reason: z.string().nullable(),
  updated_at: z.string(),
});

export const managedRepoView = z.object({
  label: z.string(),
  uri: z.string(),
  created_at: z.string(),
  updated_at: z.string(),
  state: z.enum(['proposed', 'serving', 'refused', 'withdrawn', 'shadowed']),
  connectors: z.array(connectorState),
});

export const managedListResponse = z.object({ tenant: z.string(), repositories: z.array(managedRepoView) });
export const managedAddResponse = z.object({
  tenant: z.string(),
  repository: managedRepoView,
  created: z.boolean(),
});

const example = {
  label: 'docs/share',
  uri: 'smb://10.0.0.5:445',
  created_at: '2026-01-05T10:00:00.000Z',
  updated_at: '2026-01-05T10:00:00.000Z',
  state: 'serving' as const,
  connectors: [
    {
      connector: 'SHA256:3cQx… filer-gw',
      fingerprint: 'SHA256:3cQx…',
      hostname: 'filer-gw',
      state: 'serving' as const,
      reason: null,
      updated_at: '2026-01-05T10:00:01.000Z',
    },
  ],
};
const refusedExample = {
  ...example,
  label: 'docs/dav',
  uri: 'webdav+http://10.0.1.5:80/',
  state: 'refused' as const,
  connectors: [
    {
      ...example.connectors[0]!,
      state: 'refused' as const,
      reason: '10.0.1.5:80 is outside managed.allow: 10.0.1.5 is in none of the allowed blocks (10.0.0.0/24)',
    },
  ],
};

export function managedRoutes(managed: ManagedRepoService | undefined): Route[] {
  const svc = () => {
    if (!managed) throw errors.unavailable('managed repositories on this gateway');
    return managed;
  };
  return [
    {
      method: 'GET',
      path: '/v1/tenants/{id}/managed-repositories',
      operationId: 'listManagedRepositories',
      summary: "Managed repositories of a tenant, with each connector's answer",
      description:
        "`state` is `proposed` until a connector answers, `serving` when one serves it, else the connectors' answer (refused, withdrawn, shadowed) with its reason per connector.",
      responses: {
        200: {
          description: 'The proposals.',
          schema: managedListResponse,
          example: { tenant: 'acme', repositories: [example, refusedExample] },
        },
      },
      errors: [400, 404, 503],
      handler: async ({ params }) => [
        200,
        { tenant: params[0]!, repositories: await svc().list(params[0]!) },
      ],
    },
    {
      method: 'POST',
      path: '/v1/tenants/{id}/managed-repositories',
      operationId: 'addManagedRepository',
      summary: "Propose a repository to a tenant's connectors",
      description:
        "The gateway stores it and sends it to the tenant's connectors; each serves it only if its own `managed` policy in connect.yaml allows it, and answers why not otherwise. The same label again replaces the URI.",
      body: managedRepoBody,
      bodyExample: { repository: 'docs/share', uri: 'smb://10.0.0.5:445' },
      responses: {
        201: {
          description: 'Proposed.',
          schema: managedAddResponse,
          example: {
            tenant: 'acme',
            repository: { ...example, state: 'proposed', connectors: [] },
            created: true,
          },
        },
        200: {
          description: 'The URI of an existing proposal replaced.',
          schema: managedAddResponse,
          example: {
            tenant: 'acme',
            repository: { ...example, state: 'proposed', connectors: [] },
            created: false,
          },
        },
      },
      errors: [400, 404, 409, 413, 503],
      handler: async ({ params, body }) => {
        const b = parseBody(managedRepoBody, await body());
        const r = await svc().add(params[0]!, b.repository, b.uri);
        return [r.created ? 201 : 200, { tenant: params[0]!, repository: r.repo, created: r.created }];
      },
    },
    {
      method: 'DELETE',
      path: '/v1/tenants/{id}/managed-repositories/{group}/{repo}',
      operationId: 'removeManagedRepository',
      summary: 'Remove a managed repository',
      description: 'The connectors stop serving it and end its open connections.',
      responses: { 204: { description: 'Removed.' } },
      errors: [400, 404, 503],
      handler: async ({ params }) => {
        await svc().remove(params[0]!, `${params[1]!}/${params[2]!}`);
        return [204, null];
      },
    },
  ];
}
