import type { Kysely, Migration } from 'kysely';

/**
 * Managed repositories: what the operator proposed for a tenant's connectors
 * (`managed_repos`), and what each connector made of it (`managed_repo_states`).
 */
export const managedReposMigration: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('managed_repos')
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('label', 'text', (c) => c.notNull())
      .addColumn('uri', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('managed_repos_pk', ['tenant_id', 'label'])
      .execute();
    await db.schema
      .createTable('managed_repo_states')
      .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id').onDelete('cascade'))
      .addColumn('label', 'text', (c) => c.notNull())
      .addColumn('connector', 'text', (c) => c.notNull())
      .addColumn('fingerprint', 'text', (c) => c.notNull())
      .addColumn('hostname', 'text')
      .addColumn('uri', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('reason', 'text')
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('managed_repo_states_pk', ['tenant_id', 'label', 'connector'])
      .execute();
  },
  async down(db: Kysely<unknown>) {
    await db.schema.dropTable('managed_repo_states').execute();
    await db.schema.dropTable('managed_repos').execute();
  },
};
