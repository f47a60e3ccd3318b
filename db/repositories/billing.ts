/**
 * Prices as billing sees them: list prices (effective-dated, per deployment), tenant overrides
 * (negotiated rates, effective-dated), plan markups/discounts, and ledger adjustments. Every
 * write here adds a row; nothing rewrites history.
 */
import { sql } from 'kysely';
import type { Db } from '../database.js';
import type { Price, UsageAdjustment } from '../tables/index.js';

/** The price that applies to one tenant's use of one deployment at one instant. */
export interface PriceQuote {
  /** The list price row in force (always recorded, also when an override applies). */
  priceId: number;
  /** The tenant's negotiated price row in force, if any: it replaces the list token and request prices. */
  tenantPriceId: number | null;
  inputMicrosPerMtok: number;
  outputMicrosPerMtok: number;
  requestMicros: number;
  /** From the list price: negotiated rates keep the batch discount. */
  batchDiscountBps: number;
}

/**
 * The price in force at `at` for a tenant on a deployment: the latest list row with
 * `effective_from <= at`, replaced by the tenant's latest override with `effective_from <= at`
 * (`sluice_price_for`, migration 0811, which `sluice_complete` uses too).
 * Null when the deployment has no price yet at `at`.
 */
export async function priceFor(db: Db, tenantId: string, deploymentId: string, at: Date): Promise<PriceQuote | null> {
  const { rows } = await sql<{
    price_id: number; tenant_price_id: number | null; input_micros_per_mtok: number; output_micros_per_mtok: number;
    request_micros: number; batch_discount_bps: number;
  }>`select * from sluice_price_for(${tenantId}, ${deploymentId}, ${at})`.execute(db);
  const row = rows[0];
  if (!row) return null;
  return {
    priceId: row.price_id,
    tenantPriceId: row.tenant_price_id,
    inputMicrosPerMtok: row.input_micros_per_mtok,
    outputMicrosPerMtok: row.output_micros_per_mtok,
    requestMicros: row.request_micros,
    batchDiscountBps: row.batch_discount_bps,
  };
}

export interface NewPrice {
  deploymentId: string;
  /** Null = list price; otherwise a negotiated rate for this tenant. */
  tenantId: string | null;
  inputMicrosPerMtok: number;
  outputMicrosPerMtok: number;
  requestMicros: number;
  /** List prices only. */
  batchDiscountBps: number;
  effectiveFrom: Date;
}

export type AddPriceResult =
  | { ok: true; price: { id: number; effective_from: Date } }
  | { ok: false; reason: 'deployment_missing' | 'tenant_missing' | 'duplicate' | 'history' };

/**
 * Adds a price effective from `effectiveFrom`. Refuses (`history`) when usage of the deployment
 * (of that tenant, for an override) already exists at or after that instant: such rows were priced
 * by the previous price, and a new row would contradict them. Serialised per deployment.
 */
export async function addPrice(db: Db, p: NewPrice): Promise<AddPriceResult> {
  return db.transaction().execute(async (trx) => {
    const dep = await trx.selectFrom('deployments').select('id').where('id', '=', p.deploymentId).forUpdate().executeTakeFirst();
    if (!dep) return { ok: false, reason: 'deployment_missing' } as const;
    if (p.tenantId !== null && !(await trx.selectFrom('tenants').select('id').where('id', '=', p.tenantId).executeTakeFirst())) {
      return { ok: false, reason: 'tenant_missing' } as const;
    }
    let later = trx.selectFrom('usage').select('id').where('deployment_id', '=', p.deploymentId).where('created_at', '>=', p.effectiveFrom);
    if (p.tenantId !== null) later = later.where('tenant_id', '=', p.tenantId);
    if (await later.limit(1).executeTakeFirst()) return { ok: false, reason: 'history' } as const;
    const row = p.tenantId === null
      ? await trx
        .insertInto('prices')
        .values({
          deployment_id: p.deploymentId, input_micros_per_mtok: p.inputMicrosPerMtok, output_micros_per_mtok: p.outputMicrosPerMtok,
          request_micros: p.requestMicros, batch_discount_bps: p.batchDiscountBps, effective_from: p.effectiveFrom,
        })
        .onConflict((oc) => oc.columns(['deployment_id', 'effective_from']).doNothing())
        .returning(['id', 'effective_from'])
        .executeTakeFirst()
      : await trx
        .insertInto('tenant_prices')
        .values({
          tenant_id: p.tenantId, deployment_id: p.deploymentId, input_micros_per_mtok: p.inputMicrosPerMtok,
          output_micros_per_mtok: p.outputMicrosPerMtok, request_micros: p.requestMicros, effective_from: p.effectiveFrom,
        })
        .onConflict((oc) => oc.columns(['tenant_id', 'deployment_id', 'effective_from']).doNothing())
        .returning(['id', 'effective_from'])
        .executeTakeFirst();
    return row ? ({ ok: true, price: row } as const) : ({ ok: false, reason: 'duplicate' } as const);
  });
}

/** The list price history of a deployment, oldest first. */
export async function priceHistory(db: Db, deploymentId: string): Promise<Price[]> {
  return db.selectFrom('prices').selectAll().where('deployment_id', '=', deploymentId).orderBy('effective_from').execute();
}

/** Sets a plan's markup (> 0) or discount (< 0) in basis points from `effectiveFrom` on. */
export async function addPlanRate(db: Db, plan: string, adjustmentBps: number, effectiveFrom: Date): Promise<boolean> {
  const r = await db
    .insertInto('plan_rates')
    .values({ plan, adjustment_bps: adjustmentBps, effective_from: effectiveFrom })
    .onConflict((oc) => oc.columns(['plan', 'effective_from']).doNothing())
    .executeTakeFirst();
  return Number(r.numInsertedOrUpdatedRows ?? 0) === 1;
}

/** The plan rate in force at `at`, basis points; 0 when the plan has none. */
export async function planRateAt(db: Db, plan: string, at: Date): Promise<number> {
  const row = await db
    .selectFrom('plan_rates')
    .select('adjustment_bps')
    .where('plan', '=', plan)
    .where('effective_from', '<=', at)
    .orderBy('effective_from', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row?.adjustment_bps ?? 0;
}

export interface NewAdjustment {
  tenantId: string;
  usageId: number | null;
  amountMicros: number;
  reason: string;
  actor: string;
  effectiveAt: Date;
  idempotencyKey: string | null;
}

/**
 * Appends a correction to the ledger (never an update of a usage row). Idempotent by key: a second
 * call with the same key returns the first row. Null when `usageId` is not a usage row of the tenant.
 */
export async function addAdjustment(db: Db, a: NewAdjustment): Promise<UsageAdjustment | null> {
  if (a.usageId !== null) {
    const u = await db.selectFrom('usage').select('id').where('id', '=', a.usageId).where('tenant_id', '=', a.tenantId).executeTakeFirst();
    if (!u) return null;
  }
  const inserted = await db
    .insertInto('usage_adjustments')
    .values({
      tenant_id: a.tenantId, usage_id: a.usageId, amount_micros: a.amountMicros, reason: a.reason, actor: a.actor,
      effective_at: a.effectiveAt, idempotency_key: a.idempotencyKey,
    })
    .onConflict((oc) => oc.column('idempotency_key').doNothing())
    .returningAll()
    .executeTakeFirst();
  if (inserted) return inserted;
  return (await db.selectFrom('usage_adjustments').selectAll().where('idempotency_key', '=', a.idempotencyKey).executeTakeFirst()) ?? null;
}

/** Tenants to bill for a period: active ones, and suspended ones with usage in the period. */
export async function billableTenants(db: Db, periodStart: Date, periodEnd: Date): Promise<string[]> {
  const rows = await sql<{ id: string }>`
    select id from tenants where status = 'active'
    union
    select distinct tenant_id from usage where created_at >= ${periodStart} and created_at < ${periodEnd}
    order by 1`.execute(db);
  return rows.rows.map((r) => r.id);
}
