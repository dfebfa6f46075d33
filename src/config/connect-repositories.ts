/**
 * The `repositories:` and `health_check:` keys of connect.yaml: group → repository → URI,
 * each URI parsed, labels checked (unique without case), and the health checks.
 */
import { z } from 'zod';
import { isValidName } from '../core/ids.js';
import type { FieldProblem } from '../errors/index.js';
import { zodProblems } from './load.js';
import { duration } from './schema-helpers.js';
import { parseRepositoryUri, type RepositoryTarget } from './uri.js';

export interface RepositoryConfig extends RepositoryTarget {
  /** "<group>/<repo>": the forward's label. */
  label: string;
  group: string;
  name: string;
  /** The URI as written. */
  uri: string;
  /** Checked every interval; a failing repository is withdrawn from the gateway until it passes. */
  healthCheck?: HealthCheckConfig;
  /** Send the destination a PROXY protocol header naming the cloud caller (`proxy_protocol: v1|v2`). */
  proxyProtocol?: 'v1' | 'v2';
}

/** `health_check: { tcp: true | http: /path, interval: 10s, timeout: 2s }` */
export interface HealthCheckConfig {
  kind: 'tcp' | 'http';
  /** http: the request path. */
  path: string | null;
  interval: number;
  timeout: number;
}

const healthCheckSchema = z
  .strictObject({
    tcp: z.literal(true, { error: 'use "tcp: true"' }).optional(),
    http: z.string().startsWith('/', 'use a request path such as /health').optional(),
    interval: duration.default(10_000),
    timeout: duration.default(2_000),
  })
  .superRefine((h, ctx) => {
    if ((h.tcp === undefined) === (h.http === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give one of "tcp: true" or "http: /path"' });
    }
    if (h.interval < 100 || h.timeout < 10 || h.timeout > h.interval) {
      ctx.addIssue({ code: 'custom', message: 'needs 100ms <= interval and 10ms <= timeout <= interval' });
    }
  });

const HTTP_SERVICES = new Set(['http', 'https', 'webdav', 'cq5', 'cmis', 'alfresco', 'tcp']);

/** A health_check value (false = none); problems are named by `path`. */
function parseHealthCheck(
  value: unknown,
  path: string,
  problems: FieldProblem[],
  target?: RepositoryTarget,
): HealthCheckConfig | undefined {
  if (value === undefined || value === null || value === false) return undefined;
  const r = healthCheckSchema.safeParse(value);
  if (!r.success) {
    for (const p of zodProblems(r.error))
      problems.push({ path: p.path ? `${path}.${p.path}` : path, message: p.message });
    return undefined;
  }
  const h = r.data;
  if (h.http !== undefined && target && !HTTP_SERVICES.has(target.service)) {
    problems.push({
      path: `${path}.http`,
      message: `a ${target.service} repository does not speak HTTP: use "tcp: true"`,
    });
    return undefined;
  }
  return {
    kind: h.http === undefined ? 'tcp' : 'http',
    path: h.http ?? null,
    interval: h.interval,
    timeout: h.timeout,
  };
}

const NAME_RULE = 'use 1-63 characters A-Z, a-z, 0-9, "_" or "-", starting with a letter or digit';

export function parseRepositories(
  value: unknown,
  problems: FieldProblem[],
  health?: unknown,
): RepositoryConfig[] {
  const globalCheck = parseHealthCheck(health, 'health_check', problems);
  const out: RepositoryConfig[] = [];
  if (value === undefined || value === null) return out;
  if (typeof value !== 'object' || Array.isArray(value)) {
    problems.push({ path: 'repositories', message: 'must be a mapping: group → repository → URI' });
    return out;
  }
  const labels = new Map<string, string>();
  for (const [group, repos] of Object.entries(value)) {
    const gpath = `repositories.${group}`;
    if (!isValidName(group)) problems.push({ path: gpath, message: `invalid group name: ${NAME_RULE}` });
    if (repos === null || repos === undefined) continue;
    if (typeof repos !== 'object' || Array.isArray(repos)) {
      problems.push({
        path: gpath,
        message: 'must be a mapping: repository name → URI, e.g. "docs: smb://fileserver:445"',
      });
      continue;
    }
    for (const [name, entry] of Object.entries(repos as Record<string, unknown>)) {
      const path = `${gpath}.${name}`;
      if (!isValidName(name)) {
        problems.push({ path, message: `invalid repository name: ${NAME_RULE}` });
        continue;
      }
      const label = `${group}/${name}`;
      const other = labels.get(label.toLowerCase());
      if (other !== undefined) {
        problems.push({
          path,
          message: `duplicate repository label ${label} (same as ${other}; labels are compared without case)`,
        });
        continue;
      }
      labels.set(label.toLowerCase(), label);
      // A repository is a URI, or { uri, health_check } to give it its own check (false: none).
      const long = entry !== null && typeof entry === 'object' && !Array.isArray(entry);
      const e = (long ? entry : { uri: entry }) as Record<string, unknown>;
      const extra = Object.keys(e).filter((k) => !['uri', 'health_check', 'proxy_protocol'].includes(k));
      if (extra.length > 0) {
        problems.push({
          path,
          message: `unknown key "${extra[0]}" (a repository takes uri, health_check and proxy_protocol)`,
        });
        continue;
      }
      const pp = e.proxy_protocol;
      if (pp !== undefined && pp !== 'v1' && pp !== 'v2') {
        problems.push({
          path: `${path}.proxy_protocol`,
          message: `use v1 or v2 (the PROXY protocol version the destination reads), not ${JSON.stringify(pp)}`,
        });
        continue;
      }
      if (long && e.uri === undefined) {
        problems.push({ path, message: 'needs uri: the repository URI, e.g. "http://intranet:80"' });
        continue;
      }
      const uri = e.uri;
      const r = parseRepositoryUri(uri);
      if (!r.ok) {
        problems.push({ path, message: r.message });
        continue;
      }
      // The global check: over HTTP where the repository speaks it, else a TCP connect.
      const healthCheck =
        'health_check' in e
          ? parseHealthCheck(e.health_check, `${path}.health_check`, problems, r.target)
          : globalCheck && globalCheck.kind === 'http' && !HTTP_SERVICES.has(r.target.service)
            ? { ...globalCheck, kind: 'tcp' as const, path: null }
            : globalCheck;
      out.push({
        label,
        group,
        name,
        uri: String(uri).trim(),
        ...r.target,
        ...(healthCheck ? { healthCheck } : {}),
        ...(pp ? { proxyProtocol: pp } : {}),
      });
    }
  }
  return out;
}
