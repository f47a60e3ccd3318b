/**
 * Usage exports read a page at a time by (created_at, id) instead of holding a cursor transaction
 * while the client reads. These indexes give each page an ordered index scan that stops after the
 * page: (tenant_id, created_at, id) for a tenant's export (it replaces (tenant_id, created_at),
 * which it covers), (created_at, id) for an operator's export of every tenant.
 * Frozen in time: Kysely<any>, no app imports; a later change is a new migration.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index if not exists usage_tenant_created_id_idx on usage (tenant_id, created_at, id)`.execute(db);
  await sql`drop index if exists usage_tenant_created_idx`.execute(db);
  await sql`create index if not exists usage_created_id_idx on usage (created_at, id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists usage_created_id_idx`.execute(db);
  await sql`create index if not exists usage_tenant_created_idx on usage (tenant_id, created_at)`.execute(db);
  await sql`drop index if exists usage_tenant_created_id_idx`.execute(db);
}
