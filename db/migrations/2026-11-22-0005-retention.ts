/**
 * Data retention and erasure: a per-tenant retention period for stored prompts and outputs, the
 * time a tenant's content was erased, and the time a file's content was purged (its row, sizes and
 * name stay). Frozen in time: uses Kysely<any> and imports nothing of the app.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('tenants')
    .addColumn('retention_days', 'integer', (c) => c.check(sql`retention_days between 1 and 36500`))
    .addColumn('erased_at', 'timestamptz')
    .execute();
  await db.schema.alterTable('files').addColumn('content_purged_at', 'timestamptz').execute();
  // The purge looks for finished requests that still hold content, oldest first.
  await sql`create index requests_content_created_idx on requests (created_at) where result is not null or error is not null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists requests_content_created_idx`.execute(db);
  await db.schema.alterTable('files').dropColumn('content_purged_at').execute();
  await db.schema.alterTable('tenants').dropColumn('erased_at').dropColumn('retention_days').execute();
}
