import type { Kysely, Migration, MigrationProvider } from 'kysely';
import { Migrator, sql } from '../kysely-module.js';
import { managedReposMigration } from './0006-managed-repos.js';

/** Versioned migrations, the same for SQLite and PostgreSQL. Append only. */
const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('tenants')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('quota', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('tenant_keys')
        .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
        .addColumn('fingerprint', 'text', (c) => c.notNull())
        .addColumn('public_key', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('tenant_keys_pk', ['tenant_id', 'fingerprint'])
        .execute();
      await db.schema
        .createTable('leases')
        .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
        .addColumn('label', 'text', (c) => c.notNull())
        .addColumn('port', 'integer', (c) => c.notNull().unique())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('last_used_at', 'text', (c) => c.notNull())
        .addColumn('service', 'text')
        .addColumn('scheme', 'text')
        .addColumn('host', 'text')
        .addColumn('dest_port', 'integer')
        .addColumn('path', 'text')
        .addPrimaryKeyConstraint('leases_pk', ['tenant_id', 'label'])
        .execute();
      await db.schema
        .createTable('group_keys')
        .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
        .addColumn('group_name', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('group_keys_pk', ['tenant_id', 'group_name'])
        .execute();
      await db.schema
        .createTable('enrollments')
        .addColumn('token_hash', 'text', (c) => c.primaryKey())
        .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('used_at', 'text')
        .execute();
      await db.schema
        .createTable('settings')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .execute();
    },
    async down(db: Kysely<unknown>) {
      for (const t of ['settings', 'enrollments', 'group_keys', 'leases', 'tenant_keys', 'tenants']) {
        await db.schema.dropTable(t).execute();
      }
    },
  },
  '0002_cluster': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('nodes')
        .addColumn('node_id', 'text', (c) => c.primaryKey())
        .addColumn('advertise', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text', (c) => c.notNull())
        .addColumn('heartbeat_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('forwards')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('label', 'text', (c) => c.notNull())
        .addColumn('node_id', 'text', (c) => c.notNull())
        .addColumn('port', 'integer', (c) => c.notNull())
        .addColumn('connectors', 'integer', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('forwards_pk', ['tenant_id', 'label', 'node_id'])
        .execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropTable('forwards').execute();
      await db.schema.dropTable('nodes').execute();
    },
  },
  '0003_limits': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('tenant_limits')
        .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
        .addColumn('label', 'text', (c) => c.notNull())
        .addColumn('balance', 'text')
        .addColumn('bandwidth_up', 'bigint')
        .addColumn('bandwidth_down', 'bigint')
        .addColumn('max_connections', 'integer')
        .addColumn('traffic_limit', 'bigint')
        .addColumn('traffic_period', 'text')
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('tenant_limits_pk', ['tenant_id', 'label'])
        .execute();
      await db.schema
        .createTable('traffic')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('label', 'text', (c) => c.notNull())
        .addColumn('day', 'text', (c) => c.notNull())
        .addColumn('bytes_in', 'bigint', (c) => c.notNull())
        .addColumn('bytes_out', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('traffic_pk', ['tenant_id', 'label', 'day'])
        .execute();
      await db.schema.createIndex('traffic_day').on('traffic').column('day').execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropTable('traffic').execute();
      await db.schema.dropTable('tenant_limits').execute();
    },
  },
  '0004_lease_use': {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('leases').addColumn('established_at', 'text').execute();
      // Leases from before count as used: an upgrade must not shorten their life.
      await sql`update leases set established_at = last_used_at`.execute(db);
    },
    async down(db: Kysely<unknown>) {
      await db.schema.alterTable('leases').dropColumn('established_at').execute();
    },
  },
  '0005_connection_audit': {
    async up(db: Kysely<unknown>) {
      // No foreign key to tenants: a removed tenant's records stay until they expire.
      await db.schema
        .createTable('connection_audit')
        .addColumn('tenant_id', 'text', (c) => c.notNull())
        .addColumn('label', 'text', (c) => c.notNull())
        .addColumn('front_door', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('identity', 'text')
        .addColumn('connector', 'text')
        .addColumn('bytes_in', 'bigint', (c) => c.notNull())
        .addColumn('bytes_out', 'bigint', (c) => c.notNull())
        .addColumn('opened_at', 'text', (c) => c.notNull())
        .addColumn('ended_at', 'text', (c) => c.notNull())
        .addColumn('duration_ms', 'bigint', (c) => c.notNull())
        .addColumn('outcome', 'text', (c) => c.notNull())
        .addColumn('reason', 'text')
        .execute();
      await db.schema
        .createIndex('connection_audit_tenant')
        .on('connection_audit')
        .columns(['tenant_id', 'ended_at'])
        .execute();
      await db.schema
        .createIndex('connection_audit_ended')
        .on('connection_audit')
        .column('ended_at')
        .execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropTable('connection_audit').execute();
    },
  },
  '0006_managed_repos': managedReposMigration,
  '0007_allow_from': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('source_allowlists')
        .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
        .addColumn('label', 'text', (c) => c.notNull())
        .addColumn('allow_from', 'text')
        .addColumn('tunnel_from', 'text')
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('source_allowlists_pk', ['tenant_id', 'label'])
        .execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropTable('source_allowlists').execute();
    },
  },
  // which relay header a cluster member reads (a rolling upgrade mixes releases for a while)
  '0008_node_relay_version': {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('nodes').addColumn('relay_version', 'integer').execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.alterTable('nodes').dropColumn('relay_version').execute();
    },
  },
};

class InlineProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return migrations;
  }
}

export async function migrateToLatest(db: Kysely<unknown>): Promise<void> {
  const migrator = new Migrator({ db, provider: new InlineProvider() });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    throw new Error(`database migration ${failed?.migrationName ?? ''} failed: ${String(error)}`);
  }
}

export { sql };
