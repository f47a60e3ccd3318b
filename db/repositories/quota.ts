/**
 * Quota reservations, atomic in PostgreSQL. Every decision for a tenant runs under a row lock
 * on that tenant (`select … for update`), so any number of API replicas and workers admit no more
 * than the limits allow. Reservations are keyed by request: a retried activity changes nothing.
 */
import { sql, type Insertable } from 'kysely';
import type { Db } from '../database.js';
import type { BudgetEvent, Reservation, UsageTable } from '../tables/index.js';
import { minuteOf, periodOf } from '../../activities/cost.js';

export type QuotaLimit = 'requests_per_minute' | 'tokens_per_minute' | 'max_concurrent' | 'monthly_budget';

export type ReserveResult =
  | { ok: true; estCostMicros: number }
  | { ok: false; limit: QuotaLimit; retryAfterSeconds: number }
  | { ok: false; limit: 'tenant_missing'; retryAfterSeconds: null };

export interface ReserveInput {
  requestId: string;
  tenantId: string;
  estTokens: number;
  estCostMicros: number;
  at: Date;
}

function secondsUntil(from: Date, to: Date): number {
  return Math.max(1, Math.ceil((to.getTime() - from.getTime()) / 1000));
}

function nextMonth(at: Date): Date {
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1));
}

/** Admits the request against every limit of its tenant and holds its estimate, or says which limit refused. */
export async function reserve(db: Db, input: ReserveInput): Promise<ReserveResult> {
  return db.transaction().execute(async (trx) => {
    const tenant = await trx
      .selectFrom('tenants')
      .select(['requests_per_minute', 'tokens_per_minute', 'max_concurrent', 'monthly_budget_micros'])
      .where('id', '=', input.tenantId)
      .forUpdate()
      .executeTakeFirst();
    if (!tenant) return { ok: false, limit: 'tenant_missing', retryAfterSeconds: null };
    const existing = await trx
      .selectFrom('reservations')
      .select(['est_cost_micros'])
      .where('request_id', '=', input.requestId)
      .executeTakeFirst();
    if (existing) return { ok: true, estCostMicros: existing.est_cost_micros };

    const window = minuteOf(input.at);
    const period = periodOf(input.at);
    const counter = await trx
      .selectFrom('quota_counters')
      .select(['requests', 'tokens'])
      .where('tenant_id', '=', input.tenantId)
      .where('window_start', '=', window)
      .executeTakeFirst();
    const nextWindow = new Date(window.getTime() + 60_000);
    if (tenant.requests_per_minute !== null && (counter?.requests ?? 0) + 1 > tenant.requests_per_minute) {
      return { ok: false, limit: 'requests_per_minute', retryAfterSeconds: secondsUntil(input.at, nextWindow) };
    }
    if (tenant.tokens_per_minute !== null && (counter?.tokens ?? 0) + input.estTokens > tenant.tokens_per_minute) {
      return { ok: false, limit: 'tokens_per_minute', retryAfterSeconds: secondsUntil(input.at, nextWindow) };
    }
    if (tenant.max_concurrent !== null) {
      const held = await trx
        .selectFrom('reservations')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('tenant_id', '=', input.tenantId)
        .where('status', '=', 'held')
        .executeTakeFirstOrThrow();
      if (Number(held.n) >= tenant.max_concurrent) return { ok: false, limit: 'max_concurrent', retryAfterSeconds: 1 };
    }
    if (tenant.monthly_budget_micros !== null) {
      const spend = await trx
        .selectFrom('tenant_spend')
        .select(['spent_micros', 'reserved_micros'])
        .where('tenant_id', '=', input.tenantId)
        .where('period', '=', period)
        .executeTakeFirst();
      const committed = (spend?.spent_micros ?? 0) + (spend?.reserved_micros ?? 0);
      if (committed + input.estCostMicros > tenant.monthly_budget_micros) {
        return { ok: false, limit: 'monthly_budget', retryAfterSeconds: secondsUntil(input.at, nextMonth(input.at)) };
      }
    }

    await trx
      .insertInto('reservations')
      .values({
        request_id: input.requestId,
        tenant_id: input.tenantId,
        window_start: window,
        period,
        est_tokens: input.estTokens,
        est_cost_micros: input.estCostMicros,
        status: 'held',
      })
      .execute();
    await trx
      .insertInto('quota_counters')
      .values({ tenant_id: input.tenantId, window_start: window, requests: 1, tokens: input.estTokens })
      .onConflict((oc) =>
        oc.columns(['tenant_id', 'window_start']).doUpdateSet({
          requests: sql`quota_counters.requests + 1`,
          tokens: sql`quota_counters.tokens + ${input.estTokens}`,
        }),
      )
      .execute();
    await addSpend(trx, input.tenantId, period, 0, input.estCostMicros);
    if (tenant.monthly_budget_micros !== null) {
      await recordBudgetThresholds(trx, input.tenantId, period, tenant.monthly_budget_micros, input.requestId);
    }
    return { ok: true, estCostMicros: input.estCostMicros };
  });
}

async function addSpend(trx: Db, tenantId: string, period: string, spent: number, reserved: number): Promise<void> {
  await trx
    .insertInto('tenant_spend')
    .values({ tenant_id: tenantId, period, spent_micros: spent, reserved_micros: reserved })
    .onConflict((oc) =>
      oc.columns(['tenant_id', 'period']).doUpdateSet({
        spent_micros: sql`tenant_spend.spent_micros + ${spent}`,
        reserved_micros: sql`tenant_spend.reserved_micros + ${reserved}`,
      }),
    )
    .execute();
}

/** Percentages of the monthly budget at which a `budget_events` row (and a `budget.threshold` webhook) is recorded. */
export const BUDGET_THRESHOLDS = [80, 100] as const;

/**
 * Records each threshold the tenant's committed spend for `period` (settled + held reservations,
 * the figure admission counts) has reached, once per (tenant, period, threshold): the unique
 * constraint makes concurrent crossings insert one row, and `request_id` names the request whose
 * reservation or settlement crossed it (its activity then emits the audit row and webhook).
 */
async function recordBudgetThresholds(trx: Db, tenantId: string, period: string, budgetMicros: number, requestId: string): Promise<void> {
  if (budgetMicros <= 0) return;
  const spend = await trx
    .selectFrom('tenant_spend')
    .select(['spent_micros', 'reserved_micros'])
    .where('tenant_id', '=', tenantId)
    .where('period', '=', period)
    .executeTakeFirst();
  const committed = (spend?.spent_micros ?? 0) + (spend?.reserved_micros ?? 0);
  // Integer arithmetic: committed * 100 >= budget * pct.
  const crossed = BUDGET_THRESHOLDS.filter((pct) => committed * 100 >= budgetMicros * pct);
  if (crossed.length === 0) return;
  await trx
    .insertInto('budget_events')
    .values(crossed.map((pct) => ({
      tenant_id: tenantId, period, threshold_pct: pct, budget_micros: budgetMicros, committed_micros: committed, request_id: requestId,
    })))
    .onConflict((oc) => oc.columns(['tenant_id', 'period', 'threshold_pct']).doNothing())
    .execute();
}

/** The budget events a request's reservation or settlement recorded (to emit, idempotently, after the commit). */
export async function budgetEventsOfRequest(db: Db, requestId: string): Promise<BudgetEvent[]> {
  return db.selectFrom('budget_events').selectAll().where('request_id', '=', requestId).orderBy('threshold_pct').execute();
}

/** A tenant's budget, spend and crossed thresholds for one period (for `GET /v1/admin/usage`). */
export async function budgetStatus(db: Db, tenantId: string, period: string) {
  const tenant = await db.selectFrom('tenants').select('monthly_budget_micros').where('id', '=', tenantId).executeTakeFirst();
  const spend = await db
    .selectFrom('tenant_spend')
    .select(['spent_micros', 'reserved_micros'])
    .where('tenant_id', '=', tenantId)
    .where('period', '=', period)
    .executeTakeFirst();
  const events = await db
    .selectFrom('budget_events')
    .select(['threshold_pct', 'created_at', 'committed_micros'])
    .where('tenant_id', '=', tenantId)
    .where('period', '=', period)
    .orderBy('threshold_pct')
    .execute();
  return {
    period,
    monthly_budget_micros: tenant?.monthly_budget_micros ?? null,
    spent_micros: spend?.spent_micros ?? 0,
    reserved_micros: spend?.reserved_micros ?? 0,
    thresholds_crossed: events.map((e) => ({ threshold_pct: e.threshold_pct, committed_micros: e.committed_micros, at: e.created_at.toISOString() })),
  };
}

export interface UsageInput {
  requestId: string;
  step: string;
  tenantId: string;
  keyId: string;
  kind: 'sync' | 'async' | 'batch';
  model: string;
  deploymentId: string;
  pool: string;
  variant: string | null;
  priceId: number | null;
  /** The tenant's negotiated price row used, if any. @default null */
  tenantPriceId?: number | null;
  /** The instant the usage is dated at (and was priced at). @default the database's now() */
  at?: Date;
  inputTokens: number;
  outputTokens: number;
  costMicros: number;
  latencyMs: number;
}

/** The ledger row for a usage input. */
function usageRow(usage: UsageInput, billable: boolean): Insertable<UsageTable> {
  return {
    request_id: usage.requestId,
    step: usage.step,
    tenant_id: usage.tenantId,
    key_id: usage.keyId,
    kind: usage.kind,
    model: usage.model,
    deployment_id: usage.deploymentId,
    pool: usage.pool,
    variant: usage.variant,
    price_id: usage.priceId,
    tenant_price_id: usage.tenantPriceId ?? null,
    ...(usage.at ? { created_at: usage.at } : {}),
    input_tokens: usage.inputTokens,
    output_tokens: usage.outputTokens,
    cost_micros: usage.costMicros,
    latency_ms: usage.latencyMs,
    billable,
  };
}

/**
 * Writes the usage row for (request, step) and settles the reservation in one transaction.
 * Exactly once: a second call for the same (request, step) inserts nothing and changes nothing.
 * Returns the usage row's cost as stored.
 */
export async function settle(db: Db, usage: UsageInput): Promise<{ costMicros: number; inserted: boolean }> {
  return db.transaction().execute(async (trx) => {
    const reservation = await trx
      .selectFrom('reservations')
      .selectAll()
      .where('request_id', '=', usage.requestId)
      .forUpdate()
      .executeTakeFirst();
    const inserted = await trx
      .insertInto('usage')
      .values(usageRow(usage, true))
      .onConflict((oc) => oc.columns(['request_id', 'step']).doNothing())
      .returning('cost_micros')
      .executeTakeFirst();
    if (!inserted) {
      const row = await trx
        .selectFrom('usage')
        .select('cost_micros')
        .where('request_id', '=', usage.requestId)
        .where('step', '=', usage.step)
        .executeTakeFirstOrThrow();
      return { costMicros: row.cost_micros, inserted: false };
    }
    const held = reservation?.status === 'held';
    const period = reservation?.period ?? periodOf(new Date());
    await addSpend(trx, usage.tenantId, period, usage.costMicros, held ? -reservation.est_cost_micros : 0);
    const budget = await trx.selectFrom('tenants').select('monthly_budget_micros').where('id', '=', usage.tenantId).executeTakeFirst();
    if (budget?.monthly_budget_micros != null) {
      await recordBudgetThresholds(trx, usage.tenantId, period, budget.monthly_budget_micros, usage.requestId);
    }
    if (reservation && held) {
      await trx
        .updateTable('reservations')
        .set({ status: 'settled', closed_at: new Date() })
        .where('request_id', '=', usage.requestId)
        .execute();
      const actualTokens = usage.inputTokens + usage.outputTokens;
      await trx
        .updateTable('quota_counters')
        .set({ tokens: sql`greatest(0, tokens + ${actualTokens - reservation.est_tokens})` })
        .where('tenant_id', '=', usage.tenantId)
        .where('window_start', '=', reservation.window_start)
        .execute();
    }
    return { costMicros: usage.costMicros, inserted: true };
  });
}

/**
 * Records tokens a failed or cancelled attempt spent, as a usage row with `billable = false`:
 * priced (what it would have cost, for finance's view of failures) but never invoiced, and it
 * changes no spend, counter or reservation (the request's compensation releases those).
 * Exactly once per (request, step), like `settle`.
 */
export async function recordUnbilledUsage(db: Db, usage: UsageInput): Promise<{ inserted: boolean }> {
  const row = await db
    .insertInto('usage')
    .values(usageRow(usage, false))
    .onConflict((oc) => oc.columns(['request_id', 'step']).doNothing())
    .returning('id')
    .executeTakeFirst();
  return { inserted: row !== undefined };
}

/** Releases a held reservation (failure, cancel): its estimate no longer counts. Idempotent. */
export async function release(db: Db, requestId: string): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const r = await trx
      .updateTable('reservations')
      .set({ status: 'released', closed_at: new Date() })
      .where('request_id', '=', requestId)
      .where('status', '=', 'held')
      .returningAll()
      .executeTakeFirst();
    if (!r) return false;
    await addSpend(trx, r.tenant_id, r.period, 0, -r.est_cost_micros);
    await trx
      .updateTable('quota_counters')
      .set({ tokens: sql`greatest(0, tokens - ${r.est_tokens})` })
      .where('tenant_id', '=', r.tenant_id)
      .where('window_start', '=', r.window_start)
      .execute();
    return true;
  });
}

/** Held reservations created before `before`, oldest first: candidates for the reconciler. */
export async function listHeldReservations(db: Db, before: Date, limit: number): Promise<Reservation[]> {
  return db
    .selectFrom('reservations')
    .selectAll()
    .where('status', '=', 'held')
    .where('created_at', '<', before)
    .orderBy('created_at')
    .limit(limit)
    .execute();
}
