/**
 * Quota reservations, atomic in PostgreSQL. Every decision for a tenant runs under a row lock
 * on that tenant (`select … for update`), so any number of API replicas and workers admit no more
 * than the limits allow. Reservations are keyed by request: a retried activity changes nothing.
 * Reserve and settle, on every request's path, are one round trip each: the PL/pgSQL functions
 * of migration 0008 (`sluice_reserve`, `sluice_settle`, `sluice_record_budget_thresholds`).
 */
import { sql, type Insertable } from 'kysely';
import type { Db } from '../database.js';
import { preparedQuery } from '../prepared-query.js';
import type { BudgetEvent, Model, Reservation, UsageTable } from '../tables/index.js';
import type { UsageEntry } from '../../contracts/chat.js';
import { minuteOf, periodOf, periodRange } from '../../domain/billing-calendar.js';

export type QuotaLimit = 'requests_per_minute' | 'tokens_per_minute' | 'max_concurrent' | 'monthly_budget';

export type ReserveResult =
  /** `budgetEvents`: budget thresholds may name this request (emit them); false = certainly none. */
  | { ok: true; estCostMicros: number; budgetEvents: boolean }
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
  return periodRange(periodOf(at)).end;
}

/**
 * The statement of {@link reserve}, compiled once and named (every request runs it): its columns
 * named, so PostgreSQL parses it once per connection.
 */
const reserveQuery = preparedQuery(
  { requestId: 'string', tenantId: 'string', estTokens: 'value', estCostMicros: 'value', window: 'date', period: 'string' },
  (db, p) => ({
    compile: () => sql<ReserveRow>`
      select outcome, est_cost_micros, budget_events from sluice_reserve(${p.requestId}, ${p.tenantId}, ${p.estTokens}, ${p.estCostMicros},
        ${p.window}, ${p.period}, ${sql.val([...BUDGET_THRESHOLDS])}::integer[])`.compile(db),
  }),
);

/**
 * Admits the request against every limit of its tenant and holds its estimate, or says which limit
 * refused: one call of `sluice_reserve` (migration 0008), which runs under the tenant's row lock.
 */
export async function reserve(db: Db, input: ReserveInput): Promise<ReserveResult> {
  const { rows } = await db.executeQuery(reserveQuery(db, {
    requestId: input.requestId, tenantId: input.tenantId, estTokens: input.estTokens, estCostMicros: input.estCostMicros,
    window: minuteOf(input.at), period: periodOf(input.at),
  }));
  const row = rows[0];
  if (!row) throw new Error('sluice_reserve returned no row');
  return reserveResult(input, row);
}

/**
 * {@link reserve} for each input, in one call of `sluice_reserve_many` (migration 0611): one
 * round trip and one transaction, each input admitted or refused on its own, in order.
 */
export async function reserveMany(db: Db, inputs: readonly ReserveInput[]): Promise<ReserveResult[]> {
  if (inputs.length === 0) return [];
  const items = inputs.map((i) => ({
    request_id: i.requestId, tenant_id: i.tenantId, est_tokens: i.estTokens, est_cost: i.estCostMicros,
    window: minuteOf(i.at).toISOString(), period: periodOf(i.at),
  }));
  const { rows } = await sql<ReserveRow & { ord: number }>`
    select * from sluice_reserve_many(${JSON.stringify(items)}::jsonb, ${sql.val([...BUDGET_THRESHOLDS])}::integer[])`.execute(db);
  return inputs.map((input, i) => {
    const row = rows[i];
    if (row?.ord !== i + 1) throw new Error('sluice_reserve_many returned rows out of order');
    return reserveResult(input, row);
  });
}

interface ReserveRow { outcome: 'ok' | 'tenant_missing' | QuotaLimit; est_cost_micros: number | null; budget_events: boolean }

function reserveResult(input: ReserveInput, row: ReserveRow): ReserveResult {
  const window = minuteOf(input.at);
  switch (row.outcome) {
    case 'ok':
      return { ok: true, estCostMicros: Number(row.est_cost_micros), budgetEvents: row.budget_events };
    case 'tenant_missing':
      return { ok: false, limit: 'tenant_missing', retryAfterSeconds: null };
    case 'monthly_budget':
      return { ok: false, limit: row.outcome, retryAfterSeconds: secondsUntil(input.at, nextMonth(input.at)) };
    case 'max_concurrent':
      return { ok: false, limit: row.outcome, retryAfterSeconds: 1 };
    default:
      return { ok: false, limit: row.outcome, retryAfterSeconds: secondsUntil(input.at, new Date(window.getTime() + 60_000)) };
  }
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

/** What the ledger adds to a workflow's usage entry: the price in force and the cost at it. */
export interface UsagePricing {
  priceId: number | null;
  /** The tenant's negotiated price row used, if any. @default null */
  tenantPriceId?: number | null;
  /** The instant the usage is dated at (and was priced at). @default the database's now() */
  at?: Date;
  costMicros: number;
}

/** A usage row as the ledger writes it (`usage` table, one per request and step): the workflow's entry, priced. */
export interface UsageInput extends UsageEntry, UsagePricing {}

/** The ledger row for a usage input (its prompt tokens are the row's `input_tokens`, its completion tokens `output_tokens`). */
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
    input_tokens: usage.promptTokens,
    output_tokens: usage.completionTokens,
    cost_micros: usage.costMicros,
    latency_ms: usage.latencyMs,
    billable,
  };
}

/**
 * Writes the usage row for (request, step) and settles the reservation, in one call of
 * `sluice_settle` (migration 0008). Exactly once: a second call for the same (request, step)
 * inserts nothing and changes nothing. Returns the usage row's cost as stored.
 * `part`: one step of several under the request's reservation, which stays held with what the
 * step spent taken off its estimate (`sluice_settle_part`, migration 0701); the last step settles
 * without it.
 */
export async function settle(db: Db, usage: UsageInput, part = false): Promise<{ costMicros: number; inserted: boolean; budgetEvents: boolean }> {
  const { rows } = await sql<{ cost_micros: number; inserted: boolean; budget_events: boolean }>`
    select * from ${sql.raw(part ? 'sluice_settle_part' : 'sluice_settle')}(${usage.requestId}, ${usage.step}, ${usage.tenantId}, ${usage.keyId}, ${usage.kind}, ${usage.model},
      ${usage.deploymentId}, ${usage.pool}, ${usage.variant}, ${usage.priceId}, ${usage.tenantPriceId ?? null},
      ${usage.at ?? null}, ${usage.promptTokens}, ${usage.completionTokens}, ${usage.costMicros}, ${usage.latencyMs},
      ${periodOf(new Date())}, ${sql.val([...BUDGET_THRESHOLDS])}::integer[])`.execute(db);
  const row = rows[0];
  if (!row) throw new Error('sluice_settle returned no row');
  return { costMicros: Number(row.cost_micros), inserted: row.inserted, budgetEvents: row.budget_events };
}

/**
 * {@link settle} for each usage, in one call of `sluice_settle_many` (migration 0611): one round
 * trip and one transaction, each exactly once per (request, step) like `settle`, in order.
 */
export async function settleMany(db: Db, usages: readonly UsageInput[]): Promise<Array<{ costMicros: number; inserted: boolean; budgetEvents: boolean }>> {
  if (usages.length === 0) return [];
  const items = usages.map((u) => ({
    request_id: u.requestId, step: u.step, tenant_id: u.tenantId, key_id: u.keyId, kind: u.kind, model: u.model,
    deployment_id: u.deploymentId, pool: u.pool, variant: u.variant, price_id: u.priceId, tenant_price_id: u.tenantPriceId ?? null,
    at: u.at?.toISOString() ?? null, input_tokens: u.promptTokens, output_tokens: u.completionTokens, cost: u.costMicros, latency_ms: u.latencyMs,
  }));
  const { rows } = await sql<{ ord: number; cost_micros: number; inserted: boolean; budget_events: boolean }>`
    select * from sluice_settle_many(${JSON.stringify(items)}::jsonb, ${periodOf(new Date())}, ${sql.val([...BUDGET_THRESHOLDS])}::integer[])`.execute(db);
  return usages.map((_, i) => {
    const row = rows[i];
    if (row?.ord !== i + 1) throw new Error('sluice_settle_many returned rows out of order');
    return { costMicros: Number(row.cost_micros), inserted: row.inserted, budgetEvents: row.budget_events };
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
    // The counters before the spend: the order every ledger function locks them in (migration 0841).
    await trx
      .updateTable('quota_counters')
      .set({ tokens: sql`greatest(0, tokens - ${r.est_tokens})` })
      .where('tenant_id', '=', r.tenant_id)
      .where('window_start', '=', r.window_start)
      .execute();
    await addSpend(trx, r.tenant_id, r.period, 0, -r.est_cost_micros);
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

/**
 * The precheck's answer; `concurrencyLimited`: the tenant has a concurrency limit, which counts a
 * request until its settlement (a sync answer that leaves before it would count against the
 * caller's next request: `api/routes/chat.ts`).
 */
export type PrecheckResult = { ok: true; concurrencyLimited: boolean } | { ok: false; limit: 'requests_per_minute' | 'max_concurrent'; retryAfterSeconds: number };

/** The columns of the precheck's read (`precheckColumns`). */
interface PrecheckRow { requests_per_minute: number | null; max_concurrent: number | null; requests: number | null; held: number | null }

/**
 * The precheck's read of the tenant `t` (a `tenants` row in the statement's from clause): its
 * requests-per-minute and concurrency limits, this window's request count and its held
 * reservations (counted only under a concurrency limit).
 */
function precheckColumns(window: Date) {
  return sql`t.requests_per_minute, t.max_concurrent,
    (select q.requests from quota_counters q where q.tenant_id = t.id and q.window_start = ${window}) as requests,
    case when t.max_concurrent is null then null
         else (select count(*) from reservations r where r.tenant_id = t.id and r.status = 'held') end as held`;
}

/** The precheck's decision on its read (no row: no such tenant, which the workflow's authorization answers). */
function precheckResult(row: PrecheckRow | undefined, at: Date): PrecheckResult {
  if (!row) return { ok: true, concurrencyLimited: false };
  const window = minuteOf(at);
  if (row.requests_per_minute !== null && Number(row.requests ?? 0) + 1 > row.requests_per_minute) {
    return { ok: false, limit: 'requests_per_minute', retryAfterSeconds: secondsUntil(at, new Date(window.getTime() + 60_000)) };
  }
  if (row.max_concurrent !== null && Number(row.held ?? 0) >= row.max_concurrent) {
    return { ok: false, limit: 'max_concurrent', retryAfterSeconds: 1 };
  }
  return { ok: true, concurrencyLimited: row.max_concurrent !== null };
}

/** Every column of `models`, as `modelAndPrecheck` selects them (a column the table gains and this misses fails the type check below). */
const MODEL_COLUMNS = [
  'id', 'owned_by', 'context_length', 'max_output_tokens', 'kind', 'accepts_dimensions', 'cache_micros_per_mtok', 'cache_ttl_seconds', 'created_at',
] as const satisfies ReadonlyArray<keyof Model>;
const EVERY_MODEL_COLUMN: Exclude<keyof Model, (typeof MODEL_COLUMNS)[number]> extends never ? true : never = true;
void EVERY_MODEL_COLUMN;

/** A row's columns, each null when its left join found nothing. */
type NullableColumns<T> = { [K in keyof T]: T[K] | null };

/** What {@link modelAndPrecheck}'s statement returns: the model's columns (null: none) and the precheck's read. */
type ModelAndPrecheckRow = NullableColumns<Model> & { precheck: PrecheckRow | null };

/**
 * The statement of {@link modelAndPrecheck}, compiled once and named (every chat and Responses
 * request runs it): PostgreSQL parses it once per connection. The model's columns by name, the
 * precheck's read as one JSON value: neither can shadow the other, whatever columns `models`
 * gains. A missing model gives nulls, a missing tenant a null precheck.
 */
const modelAndPrecheckQuery = preparedQuery({ modelId: 'string', tenantId: 'string', window: 'date' }, (db, { modelId, tenantId, window }) => ({
  compile: () => sql<ModelAndPrecheckRow>`
    select ${sql.join(MODEL_COLUMNS.map((c) => sql.ref(`m.${c}`)))}, to_json(p) as precheck from (select 1) one
    left join models m on m.id = ${modelId}
    left join lateral (select ${precheckColumns(window)} from tenants t where t.id = ${tenantId}) p on true`.compile(db),
}));

/**
 * The model `modelId` (null: no such model) and a cheap, read-only look at the tenant's
 * requests-per-minute and concurrency limits, in one statement: what a chat or Responses route
 * reads before a request gets a row, a workflow or an audit row (no lock, nothing written). The
 * look can let through a request that {@link reserve} then refuses (two requests racing for the
 * last slot), never the other way round: the reservation stays the authority.
 */
export async function modelAndPrecheck(db: Db, modelId: string, tenantId: string, at: Date): Promise<{ model: Model | null; precheck: PrecheckResult }> {
  const { rows } = await db.executeQuery(modelAndPrecheckQuery(db, { modelId, tenantId, window: minuteOf(at) }));
  const row = rows[0];
  if (!row) throw new Error('modelAndPrecheck returned no row');
  const { precheck, ...model } = row;
  return {
    model: model.id === null ? null : (model as Model),
    precheck: precheckResult(precheck ?? undefined, at),
  };
}
