/**
 * Usage exports read a page at a time by (created_at, id) instead of holding a cursor transaction
 * while the client reads: this index serves an operator's export of every tenant (a tenant's own
 * export uses `usage_tenant_created_idx`), so each page is a range scan, not a scan of the month.
 * Frozen in time: Kysely<any>, no app imports; a later change is a new migration.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index if not exists usage_created_id_idx on usage (created_at, id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists usage_created_id_idx`.execute(db);
}
