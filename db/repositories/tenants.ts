/** Tenants and their limits. */
import type { Db } from '../database.js';
import type { Tenant, TenantUpdate } from '../tables/index.js';
import { newId } from '../../domain/ids.js';

/** A tenant's limits: these columns of its row. */
export type TenantLimits = Pick<Tenant, 'requests_per_minute' | 'tokens_per_minute' | 'max_concurrent' | 'monthly_budget_micros' | 'allowed_models'>;

export async function createTenant(db: Db, input: { name: string; plan: string; limits: TenantLimits }): Promise<Tenant> {
  return db
    .insertInto('tenants')
    .values({ id: newId('ten'), name: input.name, plan: input.plan, ...input.limits })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function getTenant(db: Db, id: string): Promise<Tenant | null> {
  return (await db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
}

export async function listTenants(db: Db, opts: { limit: number; after: string | null; only: string | null }): Promise<Tenant[]> {
  let q = db.selectFrom('tenants').selectAll();
  if (opts.only !== null) q = q.where('id', '=', opts.only);
  if (opts.after !== null) q = q.where('id', '>', opts.after);
  return q.orderBy('id').limit(opts.limit).execute();
}

export async function updateTenant(db: Db, id: string, patch: TenantUpdate): Promise<Tenant | null> {
  const row = await db
    .updateTable('tenants')
    .set({ ...patch, updated_at: new Date() })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
  return row ?? null;
}
