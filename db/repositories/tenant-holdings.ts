/**
 * What a tenant holds (files and their bytes, unfinished batches, webhook endpoints), for the
 * per-tenant caps (`api/tenant-caps.ts`). A create that must not pass a cap locks the tenant's
 * row with {@link lockTenantRow}, counts, and inserts in one transaction.
 */
import { sql } from 'kysely';
import type { Db } from '../database.js';

/**
 * Locks the tenant's row for the rest of the transaction, so that creates of one tenant check
 * their caps and insert one after the other; false when there is no such tenant.
 */
export async function lockTenantRow(trx: Db, tenantId: string): Promise<boolean> {
  const row = await trx.selectFrom('tenants').select('id').where('id', '=', tenantId).forUpdate().executeTakeFirst();
  return row !== undefined;
}

/** How many files a tenant stores and their bytes (content erased files count as files, not bytes). */
export async function tenantFileUsage(db: Db, tenantId: string): Promise<{ files: number; bytes: number }> {
  const row = await db
    .selectFrom('files')
    .select([
      sql<number>`count(*)::bigint`.as('files'),
      sql<number>`coalesce(sum(case when content_purged_at is null then bytes else 0 end), 0)::bigint`.as('bytes'),
    ])
    .where('tenant_id', '=', tenantId)
    .executeTakeFirstOrThrow();
  return { files: Number(row.files), bytes: Number(row.bytes) };
}

/** Batches of a tenant that have not finished (validating, in progress, finalizing, cancelling). */
export async function countActiveBatches(db: Db, tenantId: string): Promise<number> {
  const row = await db
    .selectFrom('batches')
    .select(sql<number>`count(*)::bigint`.as('n'))
    .where('tenant_id', '=', tenantId)
    .where('status', 'in', ['validating', 'in_progress', 'finalizing', 'cancelling'])
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Webhook endpoints of a tenant, active or disabled. */
export async function countWebhookEndpoints(db: Db, tenantId: string): Promise<number> {
  const row = await db
    .selectFrom('webhook_endpoints')
    .select(sql<number>`count(*)::bigint`.as('n'))
    .where('tenant_id', '=', tenantId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
