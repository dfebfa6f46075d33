/**
 * Managed repositories, the gateway's side: the operator proposes a repository (label + URI) for
 * a tenant; the gateway stores it and sends it to the tenant's connectors, which decide. This
 * service keeps the proposals and what each connector answered (serving, refused + why,
 * withdrawn, shadowed), and audits every step. It never decides what a connector may reach:
 * the connector's own policy does.
 */
import { errors, TetherError } from '../errors/index.js';
import type { Logger } from '../log/index.js';
import type { ManagedRepoRow, ManagedStateRow, Store } from '../store/types.js';
import type { Clock } from './clock.js';
import type { TenantEvents } from './events.js';
import { assertTenantId, cleanText, parseLabel } from './ids.js';
import type { RefusalLog } from './refusals.js';

/** Proposals one tenant may have at once (`forwards.max_managed`). */
export const MAX_MANAGED_PER_TENANT = 200;
/** Connectors whose answer is kept per proposal (the newest). */
export const MAX_STATES_PER_REPO = 32;
export const MAX_MANAGED_URI = 2048;

export type ManagedStateName = 'serving' | 'refused' | 'withdrawn' | 'shadowed';
export const MANAGED_STATES: readonly ManagedStateName[] = ['serving', 'refused', 'withdrawn', 'shadowed'];

export interface ManagedConnectorState {
  connector: string;
  fingerprint: string;
  hostname: string | null;
  state: ManagedStateName;
  reason: string | null;
  updated_at: string;
}

export interface ManagedRepoView {
  label: string;
  uri: string;
  created_at: string;
  updated_at: string;
  /** "proposed" until a connector answers; else serving when one serves it, else the answers' state. */
  state: 'proposed' | ManagedStateName;
  connectors: ManagedConnectorState[];
}

export interface ManagedReport {
  label: string;
  uri: string;
  state: ManagedStateName;
  reason: string | null;
}

export class ManagedRepoService {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly events: TenantEvents,
    private readonly refusals: RefusalLog,
    /** Checks a URI's form (config/uri.ts); a string is what is wrong with it. */
    private readonly checkUri: (uri: string) => string | undefined,
    private readonly maxPerTenant = MAX_MANAGED_PER_TENANT,
  ) {}

  private now(): string {
    return new Date(this.clock.now()).toISOString();
  }

  private async tenant(id: string): Promise<void> {
    assertTenantId(id);
    if (!(await this.store.getTenant(id))) throw errors.tenantNotFound(id);
  }

  /** The tenant's proposals, each with what every connector answered. */
  async list(tenantId: string): Promise<ManagedRepoView[]> {
    await this.tenant(tenantId);
    const [repos, states] = await Promise.all([
      this.store.listManagedRepos(tenantId),
      this.store.listManagedStates(tenantId),
    ]);
    return repos.map((r) =>
      view(
        r,
        states.filter((s) => s.label === r.label && s.uri === r.uri),
      ),
    );
  }

  /** The tenant's proposals as connectors get them. */
  proposals(tenantId: string): Promise<ManagedRepoRow[]> {
    return this.store.listManagedRepos(tenantId);
  }

  async add(
    tenantId: string,
    label: string,
    uri: string,
  ): Promise<{ repo: ManagedRepoView; created: boolean }> {
    await this.tenant(tenantId);
    if (!parseLabel(label)) {
      throw errors.badRequest(
        `invalid repository ${JSON.stringify(cleanText(label, 80))}: use <group>/<repo> (1-63 letters, digits, "_" or "-" each, starting with a letter or digit)`,
      );
    }
    const text = uri.trim();
    if (text.length > MAX_MANAGED_URI) {
      throw errors.badRequest(`the URI is longer than ${MAX_MANAGED_URI} characters`);
    }
    const bad = this.checkUri(text);
    if (bad) throw errors.badRequest(`invalid URI for ${label}: ${bad}`);
    const existing = await this.store.listManagedRepos(tenantId);
    const old = existing.find((r) => r.label === label);
    if (!old && existing.length >= this.maxPerTenant) {
      const message = `tenant ${tenantId} already has ${existing.length} managed repositories (at most ${this.maxPerTenant}, forwards.max_managed)`;
      this.refusals.refuse('managed_per_tenant', tenantId, { tenant: tenantId }, message);
      throw new TetherError('MANAGED_LIMIT', message, { status: 409 });
    }
    const now = this.now();
    await this.store.putManagedRepo({
      tenant_id: tenantId,
      label,
      uri: text,
      created_at: old?.created_at ?? now,
      updated_at: now,
    });
    this.log.info(
      { event: 'managed.proposed', tenant: tenantId, label, uri: text, replaced: old?.uri ?? null },
      `managed repository ${label} of ${tenantId} proposed: ${text}`,
    );
    this.events.emit({ kind: 'managed', tenant: tenantId });
    const [repo] = (await this.list(tenantId)).filter((r) => r.label === label);
    return { repo: repo!, created: !old };
  }

  async remove(tenantId: string, label: string): Promise<void> {
    await this.tenant(tenantId);
    if (!(await this.store.deleteManagedRepo(tenantId, label))) {
      throw new TetherError(
        'MANAGED_NOT_FOUND',
        `tenant ${tenantId} has no managed repository ${JSON.stringify(cleanText(label, 200))}`,
        { status: 404 },
      );
    }
    this.log.info(
      { event: 'managed.removed', tenant: tenantId, label },
      `managed repository ${label} of ${tenantId} removed`,
    );
    this.events.emit({ kind: 'managed', tenant: tenantId });
  }

  /**
   * A connector's answer (already validated by the control channel). Kept only for a current
   * proposal with the same URI: a connector cannot make the gateway store anything else.
   */
  async report(
    tenantId: string,
    who: { fingerprint: string; hostname: string | null },
    r: ManagedReport,
  ): Promise<void> {
    const repo = (await this.store.listManagedRepos(tenantId)).find((x) => x.label === r.label);
    const fields = {
      tenant: tenantId,
      label: r.label,
      uri: r.uri,
      fingerprint: who.fingerprint,
      hostname: who.hostname,
      state: r.state,
      reason: r.reason,
    };
    if (!repo || repo.uri !== r.uri) {
      this.log.info(
        { event: 'managed.report_ignored', ...fields },
        `managed report on ${r.label} ignored: not proposed (any more)`,
      );
      return;
    }
    const event = r.state === 'serving' ? 'managed.accepted' : `managed.${r.state}`;
    const text = `managed repository ${r.label} of ${tenantId} ${r.state} by ${who.hostname ?? 'a connector'} (${who.fingerprint})${r.reason ? `: ${r.reason}` : ''}`;
    if (r.state === 'serving') this.log.info({ event, ...fields }, text);
    else this.log.warn({ event, ...fields }, text);
    const row: ManagedStateRow = {
      tenant_id: tenantId,
      label: r.label,
      connector: `${who.fingerprint} ${who.hostname ?? ''}`.trim(),
      fingerprint: who.fingerprint,
      hostname: who.hostname,
      uri: r.uri,
      state: r.state,
      reason: r.reason,
      updated_at: this.now(),
    };
    await this.store.putManagedState(row);
    await this.store.pruneManagedStates(tenantId, r.label, MAX_STATES_PER_REPO);
  }
}

function view(r: ManagedRepoRow, states: ManagedStateRow[]): ManagedRepoView {
  const connectors = states.map((s) => ({
    connector: s.connector,
    fingerprint: s.fingerprint,
    hostname: s.hostname,
    state: s.state as ManagedStateName,
    reason: s.reason,
    updated_at: s.updated_at,
  }));
  const state: ManagedRepoView['state'] =
    connectors.length === 0
      ? 'proposed'
      : connectors.some((c) => c.state === 'serving')
        ? 'serving'
        : connectors[0]!.state;
  return {
    label: r.label,
    uri: r.uri,
    created_at: r.created_at,
    updated_at: r.updated_at,
    state,
    connectors,
  };
}
