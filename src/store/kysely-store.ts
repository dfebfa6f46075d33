import type { Kysely } from 'kysely';
import { listAllowlists, setAllowlist } from './kysely-allowlists.js';
import { addConnectionRecords, listConnectionRecords, pruneConnectionRecords } from './kysely-audit.js';
import { expireLeases, leasePort, publishNodeForwards } from './kysely-leases.js';
import * as managed from './kysely-managed.js';
import { sql } from './kysely-module.js';
import { addTraffic } from './kysely-traffic.js';
import type {
  AllowlistRow,
  ConnectionRecordRow,
  DirectoryRow,
  EnrollmentRow,
  GroupKeyRow,
  KeyRow,
  LeaseRange,
  LeaseRow,
  LimitsRow,
  ManagedRepoRow,
  ManagedStateRow,
  NodeRow,
  RepoMeta,
  Store,
  TenantRow,
  TrafficRow,
  TrafficTotal,
} from './types.js';

export interface Database {
  tenants: TenantRow;
  tenant_keys: KeyRow;
  leases: LeaseRow;
  group_keys: GroupKeyRow;
  enrollments: EnrollmentRow;
  settings: { name: string; value: string };
  nodes: NodeRow;
  forwards: DirectoryRow;
  tenant_limits: LimitsRow;
  traffic: TrafficRow;
  connection_audit: ConnectionRecordRow;
  managed_repos: ManagedRepoRow;
  managed_repo_states: ManagedStateRow;
  source_allowlists: AllowlistRow;
}

/** PostgreSQL answers bigint and sums as strings; SQLite as numbers. */
function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v ?? 0);
}

function numOrNull(v: unknown): number | null {
  return v === null || v === undefined ? null : Number(v);
}

function isUniqueViolation(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  return (
    err.code === '23505' ||
    err.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' ||
    err.code === 'SQLITE_CONSTRAINT_UNIQUE'
  );
}

/** The Store on top of Kysely; the dialect decides SQLite or PostgreSQL. */
export class KyselyStore implements Store {
  constructor(
    readonly kind: 'sqlite' | 'postgres',
    protected readonly db: Kysely<Database>,
    private readonly onClose: () => Promise<void> = async () => {},
  ) {}

  async close(): Promise<void> {
    await this.db.destroy();
    await this.onClose();
  }

  async getTenant(id: string) {
    return this.db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async listTenants() {
    return this.db.selectFrom('tenants').selectAll().orderBy('id').execute();
  }

  async insertTenant(row: TenantRow) {
    try {
      await this.db.insertInto('tenants').values(row).execute();
      return true;
    } catch (e) {
      if (isUniqueViolation(e)) return false;
      throw e;
    }
  }

  async setQuota(id: string, quota: number, now: string) {
    const r = await this.db
      .updateTable('tenants')
      .set({ quota, updated_at: now })
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  async deleteTenant(id: string) {
    return this.db.transaction().execute(async (tx) => {
      for (const t of [
        'tenant_keys',
        'leases',
        'group_keys',
        'enrollments',
        'tenant_limits',
        'traffic',
        'managed_repo_states',
        'managed_repos',
        'source_allowlists',
      ] as const) {
        await tx.deleteFrom(t).where('tenant_id', '=', id).execute();
      }
      const r = await tx.deleteFrom('tenants').where('id', '=', id).executeTakeFirst();
      return Number(r.numDeletedRows) > 0;
    });
  }

  async listKeys(tenantId: string) {
    return this.db
      .selectFrom('tenant_keys')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .orderBy('created_at')
      .execute();
  }

  async replaceKeys(tenantId: string, keys: KeyRow[]) {
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('tenant_keys').where('tenant_id', '=', tenantId).execute();
      if (keys.length > 0) await tx.insertInto('tenant_keys').values(keys).execute();
    });
  }

  async addKey(key: KeyRow) {
    await this.db
      .insertInto('tenant_keys')
      .values(key)
      .onConflict((oc) => oc.columns(['tenant_id', 'fingerprint']).doNothing())
      .execute();
  }

  async deleteKey(tenantId: string, fingerprint: string) {
    const r = await this.db
      .deleteFrom('tenant_keys')
      .where('tenant_id', '=', tenantId)
      .where('fingerprint', '=', fingerprint)
      .executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  async getLease(tenantId: string, label: string) {
    return this.db
      .selectFrom('leases')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('label', '=', label)
      .executeTakeFirst();
  }

  async listLeases(tenantId?: string) {
    let q = this.db.selectFrom('leases').selectAll();
    if (tenantId !== undefined) q = q.where('tenant_id', '=', tenantId);
    return q.orderBy('port').execute();
  }

  leasePort(tenantId: string, label: string, range: LeaseRange, now: string): Promise<LeaseRow | undefined> {
    return leasePort(this.db, tenantId, label, range, now);
  }

  async updateLease(tenantId: string, label: string, meta: RepoMeta | null, now: string) {
    await this.db
      .updateTable('leases')
      .set({ last_used_at: now, ...(meta ?? {}) })
      .where('tenant_id', '=', tenantId)
      .where('label', '=', label)
      .execute();
  }

  async establishLease(tenantId: string, label: string, now: string) {
    await this.db
      .updateTable('leases')
      .set({ established_at: now })
      .where('tenant_id', '=', tenantId)
      .where('label', '=', label)
      .where('established_at', 'is', null)
      .execute();
  }

  async deleteLease(tenantId: string, label: string) {
    const r = await this.db
      .deleteFrom('leases')
      .where('tenant_id', '=', tenantId)
      .where('label', '=', label)
      .executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  expireLeases(
    cutoffs: { before: string; unusedBefore: string },
    live: Array<{ tenant_id: string; label: string }>,
  ): Promise<LeaseRow[]> {
    return expireLeases(this.db, cutoffs, live);
  }

  async withTenantLock<T>(tenantId: string, fn: (tx: Store) => Promise<T>): Promise<T> {
    return this.db.transaction().execute(async (trx) => {
      if (this.kind === 'postgres') {
        await sql`select pg_advisory_xact_lock(hashtext(${`tether.tenant:${tenantId}`}))`.execute(trx);
      }
      return fn(new KyselyStore(this.kind, trx));
    });
  }

  async directoryLabels(tenantId: string, liveAfter: string, exceptNode?: string) {
    let q = this.db
      .selectFrom('forwards')
      .innerJoin('nodes', 'nodes.node_id', 'forwards.node_id')
      .select('forwards.label')
      .distinct()
      .where('forwards.tenant_id', '=', tenantId)
      .where('nodes.heartbeat_at', '>=', liveAfter);
    if (exceptNode !== undefined) q = q.where('forwards.node_id', '!=', exceptNode);
    const rows = await q.execute();
    return rows.map((r) => r.label);
  }

  async claimDirectory(row: DirectoryRow) {
    await this.db
      .insertInto('forwards')
      .values(row)
      .onConflict((oc) =>
        oc
          .columns(['tenant_id', 'label', 'node_id'])
          .doUpdateSet({ port: row.port, updated_at: row.updated_at }),
      )
      .execute();
  }

  async getGroupKey(tenantId: string, group: string) {
    return this.db
      .selectFrom('group_keys')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('group_name', '=', group)
      .executeTakeFirst();
  }

  async listGroupKeys(tenantId: string) {
    return this.db
      .selectFrom('group_keys')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .orderBy('group_name')
      .execute();
  }

  async ensureGroupKey(row: GroupKeyRow) {
    await this.db
      .insertInto('group_keys')
      .values(row)
      .onConflict((oc) => oc.columns(['tenant_id', 'group_name']).doNothing())
      .execute();
    return (await this.getGroupKey(row.tenant_id, row.group_name)) ?? row;
  }

  async setGroupKey(row: GroupKeyRow) {
    await this.db
      .insertInto('group_keys')
      .values(row)
      .onConflict((oc) =>
        oc.columns(['tenant_id', 'group_name']).doUpdateSet({ key: row.key, created_at: row.created_at }),
      )
      .execute();
  }

  async deleteGroupKey(tenantId: string, group: string) {
    const r = await this.db
      .deleteFrom('group_keys')
      .where('tenant_id', '=', tenantId)
      .where('group_name', '=', group)
      .executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  async insertEnrollment(row: EnrollmentRow) {
    await this.db.insertInto('enrollments').values(row).execute();
  }

  async consumeEnrollment(tokenHash: string, now: string) {
    const r = await this.db
      .updateTable('enrollments')
      .set({ used_at: now })
      .where('token_hash', '=', tokenHash)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .returning('tenant_id')
      .executeTakeFirst();
    return r?.tenant_id;
  }

  async pruneEnrollments(now: string) {
    const r = await this.db.deleteFrom('enrollments').where('expires_at', '<', now).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async getSetting(name: string) {
    const r = await this.db
      .selectFrom('settings')
      .select('value')
      .where('name', '=', name)
      .executeTakeFirst();
    return r?.value;
  }

  async initSetting(name: string, value: string) {
    await this.db
      .insertInto('settings')
      .values({ name, value })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    return (await this.getSetting(name)) ?? value;
  }

  async heartbeat(node: NodeRow) {
    await this.db
      .insertInto('nodes')
      .values(node)
      .onConflict((oc) =>
        oc.column('node_id').doUpdateSet({
          advertise: node.advertise,
          heartbeat_at: node.heartbeat_at,
          relay_version: node.relay_version,
        }),
      )
      .execute();
  }

  async listNodes() {
    return this.db.selectFrom('nodes').selectAll().orderBy('node_id').execute();
  }

  async setNodeForwards(nodeId: string, rows: DirectoryRow[]) {
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom('forwards').where('node_id', '=', nodeId).execute();
      if (rows.length > 0) await tx.insertInto('forwards').values(rows).execute();
    });
  }

  publishNodeForwards(nodeId: string, rows: DirectoryRow[], staleBefore: string): Promise<void> {
    return publishNodeForwards(this.db, nodeId, rows, staleBefore);
  }

  async listDirectory() {
    return this.db.selectFrom('forwards').selectAll().orderBy('port').execute();
  }

  async reapNodes(before: string) {
    const dead = await this.db
      .selectFrom('nodes')
      .select('node_id')
      .where('heartbeat_at', '<', before)
      .execute();
    for (const d of dead) {
      await this.db.transaction().execute(async (tx) => {
        await tx.deleteFrom('forwards').where('node_id', '=', d.node_id).execute();
        await tx
          .deleteFrom('nodes')
          .where('node_id', '=', d.node_id)
          .where('heartbeat_at', '<', before)
          .execute();
      });
    }
    return dead.map((d) => d.node_id);
  }

  listAllowlists(tenantId?: string): Promise<AllowlistRow[]> {
    return listAllowlists(this.db, tenantId);
  }

  setAllowlist(row: AllowlistRow): Promise<void> {
    return setAllowlist(this.db, row);
  }

  async listLimits(tenantId?: string): Promise<LimitsRow[]> {
    let q = this.db.selectFrom('tenant_limits').selectAll();
    if (tenantId !== undefined) q = q.where('tenant_id', '=', tenantId);
    const rows = await q.orderBy('tenant_id').orderBy('label').execute();
    return rows.map((r) => ({
      ...r,
      bandwidth_up: numOrNull(r.bandwidth_up),
      bandwidth_down: numOrNull(r.bandwidth_down),
      max_connections: numOrNull(r.max_connections),
      traffic_limit: numOrNull(r.traffic_limit),
    }));
  }

  async setLimits(row: LimitsRow): Promise<void> {
    const empty =
      row.balance === null &&
      row.bandwidth_up === null &&
      row.bandwidth_down === null &&
      row.max_connections === null &&
      row.traffic_limit === null;
    if (empty) {
      await this.db
        .deleteFrom('tenant_limits')
        .where('tenant_id', '=', row.tenant_id)
        .where('label', '=', row.label)
        .execute();
      return;
    }
    const { tenant_id: _t, label: _l, ...rest } = row;
    await this.db
      .insertInto('tenant_limits')
      .values(row)
      .onConflict((oc) => oc.columns(['tenant_id', 'label']).doUpdateSet(rest))
      .execute();
  }

  addTraffic(rows: TrafficRow[]): Promise<void> {
    return addTraffic(this.db, rows);
  }

  async trafficSince(sinceDay: string, tenantId?: string): Promise<TrafficTotal[]> {
    let q = this.db
      .selectFrom('traffic')
      .select((eb) => [
        'tenant_id',
        'label',
        eb.fn.sum<number | string>('bytes_in').as('bytes_in'),
        eb.fn.sum<number | string>('bytes_out').as('bytes_out'),
      ])
      .where('day', '>=', sinceDay);
    if (tenantId !== undefined) q = q.where('tenant_id', '=', tenantId);
    const rows = await q.groupBy(['tenant_id', 'label']).orderBy('tenant_id').orderBy('label').execute();
    return rows.map((r) => ({
      tenant_id: r.tenant_id,
      label: r.label,
      bytes_in: num(r.bytes_in),
      bytes_out: num(r.bytes_out),
    }));
  }

  async pruneTraffic(beforeDay: string): Promise<number> {
    const r = await this.db.deleteFrom('traffic').where('day', '<', beforeDay).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  addConnectionRecords(rows: ConnectionRecordRow[]): Promise<void> {
    return addConnectionRecords(this.db, rows);
  }

  listConnectionRecords(q: {
    tenantId: string;
    since?: string;
    limit: number;
  }): Promise<ConnectionRecordRow[]> {
    return listConnectionRecords(this.db, q);
  }

  pruneConnectionRecords(before: string): Promise<number> {
    return pruneConnectionRecords(this.db, before);
  }

  async integrityCheck(): Promise<string> {
    if (this.kind === 'sqlite') {
      const r = await sql<{ integrity_check: string }>`pragma integrity_check`.execute(this.db);
      return r.rows.map((x) => x.integrity_check).join('; ');
    }
    await sql`select 1`.execute(this.db);
    return 'ok';
  }

  listManagedRepos(tenantId: string) {
    return managed.listManagedRepos(this.db, tenantId);
  }
  putManagedRepo(row: ManagedRepoRow) {
    return managed.putManagedRepo(this.db, row);
  }
  deleteManagedRepo(tenantId: string, label: string) {
    return managed.deleteManagedRepo(this.db, tenantId, label);
  }
  listManagedStates(tenantId: string) {
    return managed.listManagedStates(this.db, tenantId);
  }
  putManagedState(row: ManagedStateRow) {
    return managed.putManagedState(this.db, row);
  }
  pruneManagedStates(tenantId: string, label: string, keep: number) {
    return managed.pruneManagedStates(this.db, tenantId, label, keep);
  }
}
