/**
 * SLOs and SLAs (migration 0501): objective definitions, the SLA a plan carries, the SLA credits
 * written by billing, and the measurements, each one aggregate statement over the request (or
 * batch) rows of a time range: counts and `percentile_cont` in SQL, never row by row in Node.
 * The requests' range scan is an index-only scan of `requests_sli_idx`.
 */
import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../database.js';
import type { PlanSlaRow, SlaCreditRow, SloRow } from '../tables/index.js';
import { CLIENT_FAULT_FAILURES, percentileOf, type PlanSla, type SeededSlo, type SloDefinition } from '../../domain/slo.js';
import { creditMicros, creditTier, type SliCounts } from '../../domain/slo-math.js';
import type { SlaMeasurement } from '../../contracts/billing.js';
import { newId } from '../../domain/ids.js';

export async function createSlo(db: Db, d: SloDefinition): Promise<SloRow> {
  return db.insertInto('slos').values({
    id: newId('slo'), name: d.name, kind: d.kind, scope_type: d.scopeType, scope_value: d.scopeValue,
    target_ppm: d.targetPpm, slo_window: d.window, threshold_ms: d.thresholdMs,
  }).returningAll().executeTakeFirstOrThrow();
}

/**
 * Writes a seeded objective: inserted when new, its name, target, window and threshold set to the
 * seed's when they differ. `conflict` when the stored objective of that ID has another kind or
 * scope (what an objective is cannot change). Returns what changed.
 */
export async function upsertSeededSlo(db: Db, s: SeededSlo): Promise<'created' | 'updated' | 'unchanged' | 'conflict'> {
  const current = await getSlo(db, s.id);
  if (!current) {
    const inserted = await db.insertInto('slos').values({
      id: s.id, name: s.name, kind: s.kind, scope_type: s.scopeType, scope_value: s.scopeValue,
      target_ppm: s.targetPpm, slo_window: s.window, threshold_ms: s.thresholdMs,
    }).onConflict((oc) => oc.column('id').doNothing()).returning('id').executeTakeFirst();
    // Another process seeded it at the same moment: check it like a stored one.
    if (inserted) return 'created';
    return upsertSeededSlo(db, s);
  }
  if (current.kind !== s.kind || current.scope_type !== s.scopeType || current.scope_value !== s.scopeValue) return 'conflict';
  if (current.name === s.name && current.target_ppm === s.targetPpm && current.slo_window === s.window && current.threshold_ms === s.thresholdMs) return 'unchanged';
  await updateSlo(db, s.id, s);
  return 'updated';
}

export async function getSlo(db: Db, id: string): Promise<SloRow | null> {
  return (await db.selectFrom('slos').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
}

/** A page of objectives by ID. */
export async function listSlos(db: Db, opts: { limit: number; after: string | null }): Promise<SloRow[]> {
  let q = db.selectFrom('slos').selectAll();
  if (opts.after !== null) q = q.where('id', '>', opts.after);
  return q.orderBy('id').limit(opts.limit).execute();
}

/** Stores a changed definition (name, target, window, threshold); null when the objective is gone. */
export async function updateSlo(db: Db, id: string, d: SloDefinition): Promise<SloRow | null> {
  return (await db.updateTable('slos')
    .set({ name: d.name, target_ppm: d.targetPpm, slo_window: d.window, threshold_ms: d.thresholdMs, updated_at: new Date() })
    .where('id', '=', id).returningAll().executeTakeFirst()) ?? null;
}

export async function deleteSlo(db: Db, id: string): Promise<SloRow | null> {
  return (await db.deleteFrom('slos').where('id', '=', id).returningAll().executeTakeFirst()) ?? null;
}

/** A stored row as the definition the pure rules read. */
export function sloDefinitionOf(row: SloRow): SloDefinition {
  return {
    name: row.name, kind: row.kind, scopeType: row.scope_type, scopeValue: row.scope_value,
    targetPpm: row.target_ppm, window: row.slo_window, thresholdMs: row.threshold_ms,
  };
}

/** One measurement: the counts, and for latency kinds the observed percentile in ms. */
export interface SloMeasurement extends SliCounts {
  /** The tenant measured (per-tenant reports); null for the objective as a whole. */
  tenantId: string | null;
  /** Latency and TTFT kinds: `percentile_cont` of the good-or-not population; null otherwise or with no rows. */
  percentileMs: number | null;
}

function requestScope(d: SloDefinition): RawBuilder<unknown> {
  switch (d.scopeType) {
    case 'model': return sql`and r.model = ${d.scopeValue}`;
    case 'pool': return sql`and r.pool = ${d.scopeValue}`;
    case 'plan': return sql`and r.tenant_id in (select id from tenants where plan = ${d.scopeValue})`;
  }
}

/**
 * The rows an availability SLI counts over `[start, end)`: finished requests, and the requests
 * answered 5xx because their workflow could not start (`request_start_failures`, migration 0651:
 * status `failed`, no failure type, so they count against us; no pool, since no deployment was
 * chosen). A failed start deleted its request row (or left it queued, unfinished), so no request
 * is in both.
 */
function availabilityRows(start: Date, end: Date): RawBuilder<unknown> {
  return sql`(
    select tenant_id, model, pool, status, failure_type, created_at from requests
    where finished_at is not null and created_at >= ${start} and created_at < ${end}
    union all
    select tenant_id, model, null::text, 'failed', null::text, created_at from request_start_failures
    where created_at >= ${start} and created_at < ${end})`;
}

/** Which requests an objective counts (its population) and which of those are good. */
function requestPredicates(d: Pick<SloDefinition, 'kind' | 'thresholdMs'>): { population: RawBuilder<unknown>; good: RawBuilder<unknown>; column: RawBuilder<unknown> } {
  const clientFaults = sql`${[...CLIENT_FAULT_FAILURES]}::text[]`;
  const column = d.kind.startsWith('ttft') ? sql.ref('r.ttft_ms') : sql.ref('r.latency_ms');
  const population = d.kind === 'availability'
    ? sql`(r.status = 'succeeded' or (r.status = 'failed' and not (coalesce(r.failure_type, '') = any(${clientFaults}))))`
    : sql`(r.status = 'succeeded' and ${column} is not null)`;
  const good = d.kind === 'availability' ? sql`r.status = 'succeeded'` : sql`${column} <= ${d.thresholdMs ?? 0}`;
  return { population, good, column };
}

/** The request rows of `[start, end)` an objective reads (see {@link availabilityRows}). */
function requestRows(d: SloDefinition, start: Date, end: Date): RawBuilder<unknown> {
  return d.kind === 'availability'
    ? sql`${availabilityRows(start, end)} r where true`
    : sql`requests r where r.finished_at is not null and r.created_at >= ${start} and r.created_at < ${end}`;
}

/**
 * The request-based SLI of `d` over requests accepted in `[start, end)` and finished:
 * - availability: eligible = succeeded + failed with a type that counts against us
 *   (`CLIENT_FAULT_FAILURES` and cancels are left out), good = succeeded; requests whose workflow
 *   could not start count as failed ({@link availabilityRows});
 * - latency_*: over succeeded requests with a recorded latency, good = latency ≤ threshold;
 * - ttft_*: over succeeded streams that sent a chunk, good = TTFT ≤ threshold.
 */
function requestSli(d: SloDefinition, start: Date, end: Date, perTenant: boolean): RawBuilder<Row> {
  const q = percentileOf(d.kind);
  const { population, good, column } = requestPredicates(d);
  const percentile = q === null ? sql`null::double precision` : sql`percentile_cont(${q}::double precision) within group (order by ${column})`;
  const rows = requestRows(d, start, end);
  return sql<Row>`
    select ${perTenant ? sql`r.tenant_id` : sql`null::text`} as tenant_id,
           count(*)::bigint as eligible, count(*) filter (where ${good})::bigint as good, ${percentile} as percentile_ms
    from ${rows} ${requestScope(d)} and ${population}
    ${perTenant ? sql`group by r.tenant_id order by r.tenant_id` : sql``}`;
}

/**
 * Batch completion within its window, over batches created in `[start, end)` that completed or
 * expired (a batch that failed validation is the client's input; a cancelled one its choice):
 * good = completed by its `expires_at`.
 */
function batchSli(d: SloDefinition, start: Date, end: Date, perTenant: boolean): RawBuilder<Row> {
  const scope = d.scopeType === 'model' ? sql`and b.model = ${d.scopeValue}` : sql`and b.tenant_id in (select id from tenants where plan = ${d.scopeValue})`;
  return sql<Row>`
    select ${perTenant ? sql`b.tenant_id` : sql`null::text`} as tenant_id, count(*)::bigint as eligible,
           count(*) filter (where b.status = 'completed' and b.completed_at <= b.expires_at)::bigint as good,
           null::double precision as percentile_ms
    from batches b
    where b.created_at >= ${start} and b.created_at < ${end} and b.status in ('completed', 'expired') ${scope}
    ${perTenant ? sql`group by b.tenant_id order by b.tenant_id` : sql``}`;
}

interface Row {
  tenant_id: string | null;
  eligible: number;
  good: number;
  percentile_ms: number | null;
}

function measurementOf(r: Row): SloMeasurement {
  return { tenantId: r.tenant_id, eligible: Number(r.eligible), good: Number(r.good), percentileMs: r.percentile_ms === null ? null : Number(r.percentile_ms) };
}

/** The objective's SLI over `[start, end)`, as a whole. */
export async function measureSlo(db: Db, d: SloDefinition, start: Date, end: Date): Promise<SloMeasurement> {
  const query = d.kind === 'batch_window' ? batchSli(d, start, end, false) : requestSli(d, start, end, false);
  const { rows } = await query.execute(db);
  return measurementOf(rows[0] ?? { tenant_id: null, eligible: 0, good: 0, percentile_ms: null });
}

/** The objective's SLI over `[start, end)`, one row per tenant with events in it. */
export async function measureSloByTenant(db: Db, d: SloDefinition, start: Date, end: Date): Promise<SloMeasurement[]> {
  const query = d.kind === 'batch_window' ? batchSli(d, start, end, true) : requestSli(d, start, end, true);
  const { rows } = await query.execute(db);
  return rows.map(measurementOf);
}

/** One burn-rate window's counts of an objective ({@link measureSloWindows}). */
export interface SloWindowCounts extends SliCounts {
  /** The window's label (`5m`, `1h`, …). */
  window: string;
}

/**
 * The objective's good and eligible events in each of `windows` before `now`, in one statement:
 * a range scan of the longest window (requests: `requests_sli_idx` and
 * `request_start_failures_sli_idx`; batches: `batches_finished_at_idx`) with one filtered count
 * per window. Requests count by their creation, as the attainment does (a request still running
 * is counted when it finishes); batches by when they completed or expired, so that a short window
 * sees the batches that just missed (or met) theirs.
 */
export async function measureSloWindows(db: Db, d: SloDefinition, now: Date, windows: ReadonlyArray<{ label: string; ms: number }>): Promise<SloWindowCounts[]> {
  if (windows.length === 0) return [];
  const longest = Math.max(...windows.map((w) => w.ms));
  const since = (ms: number) => new Date(now.getTime() - ms);
  let at: RawBuilder<unknown>;
  let from: RawBuilder<unknown>;
  let population: RawBuilder<unknown>;
  let good: RawBuilder<unknown>;
  if (d.kind === 'batch_window') {
    at = sql`coalesce(b.completed_at, b.failed_at, b.cancelled_at, b.expired_at)`;
    const scope = d.scopeType === 'model' ? sql`and b.model = ${d.scopeValue}` : sql`and b.tenant_id in (select id from tenants where plan = ${d.scopeValue})`;
    from = sql`batches b where ${at} >= ${since(longest)} and ${at} <= ${now} and b.status in ('completed', 'expired') ${scope}`;
    population = sql`true`;
    good = sql`b.status = 'completed' and b.completed_at <= b.expires_at`;
  } else {
    at = sql.ref('r.created_at');
    from = sql`${requestRows(d, since(longest), now)} ${requestScope(d)}`;
    ({ population, good } = requestPredicates(d));
  }
  const columns = windows.map((w, i) => sql`
    count(*) filter (where ${at} >= ${since(w.ms)})::bigint as ${sql.ref(`e${i}`)},
    count(*) filter (where ${at} >= ${since(w.ms)} and ${good})::bigint as ${sql.ref(`g${i}`)}`);
  const { rows } = await sql<Record<string, string | number>>`select ${sql.join(columns)} from ${from} and ${population}`.execute(db);
  const r = rows[0] ?? {};
  return windows.map((w, i) => ({ window: w.label, eligible: Number(r[`e${i}`] ?? 0), good: Number(r[`g${i}`] ?? 0) }));
}

/**
 * A tenant's availability over `[start, end)`, all its requests (those whose workflow could not
 * start count as failed): what its plan's SLA measures.
 */
export async function tenantAvailability(db: Db, tenantId: string, start: Date, end: Date): Promise<SliCounts> {
  const { population, good } = requestPredicates({ kind: 'availability', thresholdMs: null });
  const { rows } = await sql<{ eligible: number; good: number }>`
    select count(*)::bigint as eligible, count(*) filter (where ${good})::bigint as good
    from ${availabilityRows(start, end)} r
    where r.tenant_id = ${tenantId} and ${population}`.execute(db);
  const r = rows[0];
  return { eligible: Number(r?.eligible ?? 0), good: Number(r?.good ?? 0) };
}

export async function getPlanSla(db: Db, plan: string): Promise<PlanSla | null> {
  const row = await db.selectFrom('plan_slas').selectAll().where('plan', '=', plan).executeTakeFirst();
  return row ? planSlaOf(row) : null;
}

export function planSlaOf(row: PlanSlaRow): PlanSla {
  return { targetPpm: row.target_ppm, tiers: row.tiers.map((t) => ({ belowPpm: t.belowPpm, creditBps: t.creditBps })) };
}

/** Sets (or replaces) a plan's SLA. A period already credited keeps its credit. */
export async function putPlanSla(db: Db, plan: string, sla: PlanSla): Promise<PlanSla> {
  const tiers = JSON.stringify(sla.tiers);
  await db.insertInto('plan_slas').values({ plan, target_ppm: sla.targetPpm, tiers })
    .onConflict((oc) => oc.column('plan').doUpdateSet({ target_ppm: sla.targetPpm, tiers, updated_at: new Date() }))
    .execute();
  return sla;
}

export async function deletePlanSla(db: Db, plan: string): Promise<boolean> {
  const r = await db.deleteFrom('plan_slas').where('plan', '=', plan).executeTakeFirst();
  return Number(r.numDeletedRows) > 0;
}

/** The SLA credit written for a tenant's period, if any. */
export async function getSlaCredit(db: Db, tenantId: string, period: string): Promise<SlaCreditRow | null> {
  return (await db.selectFrom('sla_credits').selectAll().where('tenant_id', '=', tenantId).where('period', '=', period).executeTakeFirst()) ?? null;
}

/** What the close writes a credit from: the invoice being written and the period's SLA measurement. */
export interface SlaCreditInput {
  invoiceId: string;
  tenantId: string;
  period: string;
  /** The period's end: the credit is dated at its last millisecond. */
  periodEnd: Date;
  sla: SlaMeasurement;
}

/**
 * Inside the close's transaction, after the usage lines are written: the tenant's SLA credit for
 * the period, once. A period credited before (the invoice was voided and is being re-issued)
 * keeps its credit: its adjustment is claimed again by the close like any other. Otherwise, when
 * the attainment earns a tier, the credit (`creditBps` of the period's charges: the amounts of
 * this invoice's usage lines dated in the period, plan rate applied, late usage and adjustments
 * left out; rounded half up) is written as a negative ledger adjustment (`sla-credit:<tenant>:
 * <period>`), claimed by this invoice, and recorded in `sla_credits`. Returns the credit written
 * now, if any.
 */
export async function writeSlaCredit(trx: Db, input: SlaCreditInput): Promise<SlaCreditRow | null> {
  const before = await getSlaCredit(trx, input.tenantId, input.period);
  if (before) return null;
  const counts = { eligible: input.sla.eligible, good: input.sla.good };
  const tier = creditTier(counts, { targetPpm: input.sla.targetPpm, tiers: input.sla.tiers });
  if (!tier) return null;
  const { rows } = await sql<{ charges: number }>`
    select coalesce(sum(amount_micros), 0)::bigint as charges from invoice_lines
    where invoice_id = ${input.invoiceId} and kind <> 'adjustment' and not late`.execute(trx);
  const charges = Number(rows[0]?.charges ?? 0);
  const credit = creditMicros(charges, tier.creditBps);
  if (credit === 0) return null;
  const pct = (ppm: number) => `${(ppm / 10_000).toFixed(4).replace(/\.?0+$/, '')}%`;
  const adjustment = await trx.insertInto('usage_adjustments').values({
    tenant_id: input.tenantId, usage_id: null, amount_micros: -credit, actor: 'system:sla',
    reason: `SLA credit ${input.period}: availability ${input.sla.good}/${input.sla.eligible} below ${pct(tier.belowPpm)} (plan ${input.sla.plan}, target ${pct(input.sla.targetPpm)}): ${tier.creditBps / 100}% of ${charges} micro-USD`,
    effective_at: new Date(input.periodEnd.getTime() - 1), idempotency_key: `sla-credit:${input.tenantId}:${input.period}`,
  }).returning('id').executeTakeFirstOrThrow();
  await trx.insertInto('billing_claims').values({ source: 'adjustment', source_id: adjustment.id, invoice_id: input.invoiceId }).execute();
  return trx.insertInto('sla_credits').values({
    tenant_id: input.tenantId, period: input.period, plan: input.sla.plan, target_ppm: input.sla.targetPpm,
    eligible: input.sla.eligible, good: input.sla.good, credit_bps: tier.creditBps, charges_micros: charges,
    credit_micros: credit, adjustment_id: adjustment.id,
  }).returningAll().executeTakeFirstOrThrow();
}

/**
 * Reconciliation of a live invoice's SLA credit: a credit recorded for its tenant and period is
 * claimed by it, its adjustment is exactly the negative credit, and the credit is its tier's rate
 * of the charges it was computed from. One sentence per failed check.
 */
export async function slaCreditProblems(db: Db, invoice: { id: string; tenant_id: string; period: string }): Promise<string[]> {
  const credit = await getSlaCredit(db, invoice.tenant_id, invoice.period);
  if (!credit) return [];
  const problems: string[] = [];
  const adj = await db.selectFrom('usage_adjustments as a')
    .leftJoin('billing_claims as c', (j) => j.onRef('c.source_id', '=', 'a.id').on('c.source', '=', 'adjustment'))
    .select(['a.amount_micros', 'c.invoice_id']).where('a.id', '=', credit.adjustment_id).executeTakeFirst();
  if (!adj) problems.push(`the SLA credit's adjustment ${credit.adjustment_id} is missing from the ledger`);
  else {
    if (adj.invoice_id !== invoice.id) problems.push(`the SLA credit of ${invoice.period} (adjustment ${credit.adjustment_id}) is not on this invoice`);
    if (adj.amount_micros !== -credit.credit_micros) problems.push(`the SLA credit adjustment is ${adj.amount_micros} micro-USD, the credit recorded is -${credit.credit_micros}`);
  }
  if (creditMicros(credit.charges_micros, credit.credit_bps) !== credit.credit_micros) {
    problems.push(`the SLA credit ${credit.credit_micros} is not ${credit.credit_bps} bps of ${credit.charges_micros} micro-USD`);
  }
  return problems;
}
