/**
 * The reads behind the database-backed gauges (workers/ops-metrics.ts): tenants' budget use and
 * batch progress. Each is one bounded query.
 */
import { sql } from 'kysely';
import type { Db } from '../database.js';
import type { BatchStatus } from '../tables/files-and-batches.js';

/** Batch statuses that are not final: the batch still has lines to run, finalize or cancel. */
export const UNFINISHED_BATCH_STATUSES = ['validating', 'in_progress', 'finalizing', 'cancelling'] as const satisfies readonly BatchStatus[];

export interface TenantBudgetUse {
  tenantId: string;
  budgetMicros: number;
  spentMicros: number;
  reservedMicros: number;
}

/**
 * Tenants with a monthly budget (above 0) and their settled and reserved spend in `period`, the
 * most used first, at most `limit`.
 */
export async function tenantBudgetUse(db: Db, period: string, limit: number): Promise<TenantBudgetUse[]> {
  const rows = await db
    .selectFrom('tenants as t')
    .leftJoin('tenant_spend as s', (join) => join.onRef('s.tenant_id', '=', 't.id').on('s.period', '=', period))
    .select([
      't.id as tenantId',
      't.monthly_budget_micros as budgetMicros',
      sql<string>`coalesce(s.spent_micros, 0)`.as('spentMicros'),
      sql<string>`coalesce(s.reserved_micros, 0)`.as('reservedMicros'),
    ])
    .where('t.monthly_budget_micros', 'is not', null)
    .where('t.monthly_budget_micros', '>', 0)
    .orderBy(sql`(coalesce(s.spent_micros, 0) + coalesce(s.reserved_micros, 0))::float8 / t.monthly_budget_micros`, 'desc')
    .orderBy('t.id')
    .limit(limit)
    .execute();
  return rows.map((r) => ({ tenantId: r.tenantId, budgetMicros: Number(r.budgetMicros), spentMicros: Number(r.spentMicros), reservedMicros: Number(r.reservedMicros) }));
}

export interface BatchProgress {
  id: string;
  status: BatchStatus;
  total: number;
  completed: number;
  failed: number;
}

/**
 * Batches not yet finished, then those that finished since `finishedSince` (newest first), at most
 * `limit` in all.
 */
export async function batchProgress(db: Db, finishedSince: Date, limit: number): Promise<BatchProgress[]> {
  const rows = await db
    .selectFrom('batches')
    .select(['id', 'status', 'total', 'completed', 'failed'])
    .where((eb) => eb.or([
      eb('status', 'in', UNFINISHED_BATCH_STATUSES),
      eb(sql`coalesce(completed_at, failed_at, cancelled_at, expired_at)`, '>=', finishedSince),
    ]))
    .orderBy(sql`case when status in ('validating', 'in_progress', 'finalizing', 'cancelling') then 0 else 1 end`)
    .orderBy('created_at', 'desc')
    .limit(limit)
    .execute();
  return rows.map((r) => ({ id: r.id, status: r.status, total: Number(r.total), completed: Number(r.completed), failed: Number(r.failed) }));
}

/** How many batches are in each unfinished status. */
export async function unfinishedBatchCounts(db: Db): Promise<Record<(typeof UNFINISHED_BATCH_STATUSES)[number], number>> {
  const rows = await db
    .selectFrom('batches')
    .select(['status', (eb) => eb.fn.countAll<string>().as('n')])
    .where('status', 'in', UNFINISHED_BATCH_STATUSES)
    .groupBy('status')
    .execute();
  const counts = { validating: 0, in_progress: 0, finalizing: 0, cancelling: 0 };
  for (const r of rows) counts[r.status as keyof typeof counts] = Number(r.n);
  return counts;
}
