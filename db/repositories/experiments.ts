/**
 * Experiments, their variants and exposures: the lifecycle writes, the candidates a request may
 * enter, the promoted defaults, and the sufficient statistics of an experiment's results
 * (aggregated in SQL: no exposure row leaves the database).
 */
import { sql } from 'kysely';
import type { Db } from '../database.js';
import type { ExperimentRow, ExperimentStatus, VariantOverrides } from '../tables/index.js';
import { newId } from '../../domain/ids.js';

export interface ExperimentVariant {
  name: string;
  weight: number;
  overrides: VariantOverrides;
}

export interface ExperimentWithVariants {
  id: string;
  name: string;
  model: string;
  tenantId: string | null;
  status: ExperimentStatus;
  startsAt: Date | null;
  endsAt: Date | null;
  trafficAllocation: number;
  targetKeyIds: string[] | null;
  targetMetadata: Record<string, string | string[]> | null;
  /** The variant others are compared with: the stored one, else the first by name. */
  controlVariant: string;
  promotedVariant: string | null;
  promotedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
  variants: ExperimentVariant[];
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** An experiment row with its variants, sorted by name. */
export function withVariants(e: ExperimentRow, variants: ExperimentVariant[]): ExperimentWithVariants {
  const sorted = [...variants].sort(byName);
  return {
    id: e.id, name: e.name, model: e.model, tenantId: e.tenant_id, status: e.status,
    startsAt: e.starts_at, endsAt: e.ends_at, trafficAllocation: e.traffic_allocation,
    targetKeyIds: e.target_key_ids, targetMetadata: e.target_metadata,
    controlVariant: e.control_variant ?? sorted[0]?.name ?? '',
    promotedVariant: e.promoted_variant, promotedAt: e.promoted_at, createdAt: e.created_at, updatedAt: e.updated_at,
    variants: sorted,
  };
}

/** `rows` with their variants (`variantsQuery`), in one query. */
async function attachVariants(db: Db, rows: ExperimentRow[]): Promise<ExperimentWithVariants[]> {
  if (rows.length === 0) return [];
  const variants = await variantsQuery(db).select('experiment_id').where('experiment_id', 'in', rows.map((e) => e.id)).execute();
  return rows.map((e) => withVariants(e, variants.filter((v) => v.experiment_id === e.id).map(({ experiment_id: _, ...v }) => v)));
}

/**
 * The running experiments on a model a tenant's request may enter, in the order they are tried:
 * the tenant's own first, then global ones, newest first. (Window, targeting and allocation are
 * decided by `domain/experiment-lifecycle.ts`.) At most `limit`.
 */
export async function runningExperimentsFor(db: Db, model: string, tenantId: string, limit = 8): Promise<ExperimentWithVariants[]> {
  return attachVariants(db, await runningExperimentsQuery(db, model, tenantId, limit).execute());
}

/** The experiments of {@link runningExperimentsFor} (their rows, in order; variants apart). */
export function runningExperimentsQuery(db: Db, model: string, tenantId: string, limit = 8) {
  return db
    .selectFrom('experiments')
    .selectAll()
    .where('model', '=', model)
    .where('status', '=', 'running')
    .where((eb) => eb.or([eb('tenant_id', '=', tenantId), eb('tenant_id', 'is', null)]))
    .orderBy((eb) => eb.case().when('tenant_id', 'is', null).then(1).else(0).end())
    .orderBy('created_at', 'desc')
    .limit(limit);
}

/** Variants as `ExperimentVariant`s (name, weight, overrides), of the experiments the caller selects. */
export function variantsQuery(db: Db) {
  return db.selectFrom('experiment_variants').select(['name', 'weight', 'overrides']);
}


/**
 * The model's default set by a promotion: the variant promoted last on this model, the tenant's
 * own before a global one. Null when none was promoted.
 */
export async function promotedDefaultFor(db: Db, model: string, tenantId: string): Promise<PromotedDefault | null> {
  const row = await promotedDefaultQuery(db, model, tenantId).executeTakeFirst();
  return row ? { experimentId: row.id, variant: row.name, overrides: row.overrides } : null;
}

/** A model's default set by a promotion. */
export interface PromotedDefault {
  experimentId: string;
  variant: string;
  overrides: VariantOverrides;
}

/** The query of {@link promotedDefaultFor}: at most one row, `id`, `name`, `overrides`. */
export function promotedDefaultQuery(db: Db, model: string, tenantId: string) {
  return db
    .selectFrom('experiments as e')
    .innerJoin('experiment_variants as v', (j) => j.onRef('v.experiment_id', '=', 'e.id').onRef('v.name', '=', 'e.promoted_variant'))
    .select(['e.id', 'v.name', 'v.overrides'])
    .where('e.model', '=', model)
    .where('e.promoted_variant', 'is not', null)
    .where((eb) => eb.or([eb('e.tenant_id', '=', tenantId), eb('e.tenant_id', 'is', null)]))
    .orderBy((eb) => eb.case().when('e.tenant_id', 'is', null).then(1).else(0).end())
    .orderBy('e.promoted_at', 'desc')
    .limit(1);
}

export interface NewExperiment {
  name: string;
  model: string;
  tenantId: string | null;
  status: 'draft' | 'running';
  startsAt: Date | null;
  endsAt: Date | null;
  trafficAllocation: number;
  targetKeyIds: string[] | null;
  targetMetadata: Record<string, string | string[]> | null;
  controlVariant: string | null;
  variants: ExperimentVariant[];
}

export async function createExperiment(db: Db, input: NewExperiment): Promise<ExperimentWithVariants> {
  return db.transaction().execute(async (trx) => {
    const exp = await trx
      .insertInto('experiments')
      .values({
        id: newId('exp'), name: input.name, model: input.model, tenant_id: input.tenantId, status: input.status,
        starts_at: input.startsAt, ends_at: input.endsAt, traffic_allocation: input.trafficAllocation,
        target_key_ids: input.targetKeyIds, target_metadata: input.targetMetadata === null ? null : JSON.stringify(input.targetMetadata),
        control_variant: input.controlVariant,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await trx
      .insertInto('experiment_variants')
      .values(input.variants.map((v) => ({ experiment_id: exp.id, name: v.name, weight: v.weight, overrides: JSON.stringify(v.overrides) })))
      .execute();
    return withVariants(exp, input.variants);
  });
}

/** The experiments a tenant's keys see (its own and global ones), or all (tenantId null). */
export async function listExperiments(db: Db, tenantId: string | null): Promise<ExperimentWithVariants[]> {
  let q = db.selectFrom('experiments').selectAll();
  if (tenantId !== null) q = q.where((eb) => eb.or([eb('tenant_id', '=', tenantId), eb('tenant_id', 'is', null)]));
  return attachVariants(db, await q.orderBy('created_at').orderBy('id').execute());
}

/** One experiment, if the caller sees it (tenantId null: the operator sees all). */
export async function getExperiment(db: Db, id: string, tenantId: string | null): Promise<ExperimentWithVariants | null> {
  let q = db.selectFrom('experiments').selectAll().where('id', '=', id);
  if (tenantId !== null) q = q.where((eb) => eb.or([eb('tenant_id', '=', tenantId), eb('tenant_id', 'is', null)]));
  const row = await q.executeTakeFirst();
  return row ? ((await attachVariants(db, [row]))[0] ?? null) : null;
}

/**
 * Moves an experiment from one of `from` to `to` in one statement (a concurrent change makes it
 * return null: the caller re-reads and reports the conflict); with `promote`, also records the
 * promoted variant. Returns the updated experiment.
 */
export async function transitionExperiment(
  db: Db,
  id: string,
  from: readonly ExperimentStatus[],
  to: ExperimentStatus,
  promote: string | null = null,
): Promise<ExperimentWithVariants | null> {
  const row = await db
    .updateTable('experiments')
    .set({ status: to, updated_at: sql<Date>`now()`, ...(promote !== null ? { promoted_variant: promote, promoted_at: sql<Date>`now()` } : {}) })
    .where('id', '=', id)
    .where('status', 'in', [...from])
    .returningAll()
    .executeTakeFirst();
  return row ? ((await attachVariants(db, [row]))[0] ?? null) : null;
}

/** Records that a request saw a variant; once per (request, experiment). */
export async function recordExposure(
  db: Db,
  e: { requestId: string; experimentId: string; tenantId: string; subject: string; variant: string },
): Promise<void> {
  await db
    .insertInto('experiment_exposures')
    .values({ request_id: e.requestId, experiment_id: e.experimentId, tenant_id: e.tenantId, subject: e.subject, variant: e.variant })
    .onConflict((oc) => oc.columns(['request_id', 'experiment_id']).doNothing())
    .execute();
}

/** Count, sum and sum of squares of a per-request quantity. */
export interface Sums {
  n: number;
  sum: number;
  sumSquares: number;
}

/** One variant's sufficient statistics, as SQL aggregated them. */
export interface VariantSums {
  variant: string;
  exposures: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  /** Per exposure: the request's total cost (0 when nothing was billed). */
  costMicros: Sums;
  /** Per served request (an `infer`/`embed` usage row): its tokens. */
  promptTokens: Sums;
  completionTokens: Sums;
  /** Served requests with a latency. */
  latencyN: number;
  /** Their latencies (ms) as [value, count], ascending: exact below 1 s, 3 significant digits above. */
  latencyHistogram: Array<[number, number]>;
  /** Succeeded streamed requests (those with a `ttft_ms`). */
  ttftN: number;
  /** Their TTFTs (ms), bucketed as the latencies. */
  ttftHistogram: Array<[number, number]>;
}

export interface FeedbackSums {
  variant: string;
  metric: string;
  kind: 'boolean' | 'score' | 'comment';
  n: number;
  /** Booleans: how many were true. */
  trues: number;
  /** Scores. */
  sum: number;
  sumSquares: number;
}

/**
 * One experiment's per-variant sums, from the rollups the triggers of migration
 * `2026-12-01-0641-experiment-rollups` keep over the exposures, their requests, their serving
 * ledger rows and their feedback (a few rows per variant, whatever the exposures: nothing is
 * joined at read time). `tenantId` narrows to one tenant's exposures (a tenant's view of a global
 * experiment). The three reads share one snapshot (repeatable read).
 */
export async function experimentSums(db: Db, experimentId: string, tenantId: string | null): Promise<{ variants: VariantSums[]; feedback: FeedbackSums[] }> {
  const { totals, buckets, feedback } = await db.transaction().setIsolationLevel('repeatable read').execute(async (trx) => {
    const tenantFilter = tenantId === null ? sql`` : sql`and tenant_id = ${tenantId}`;
    const totals = await sql<{
      variant: string; exposures: number; succeeded: number; failed: number; cancelled: number; served: number;
      cost_sum: number; cost_sq: number; pt_sum: number; pt_sq: number; ct_sum: number; ct_sq: number;
    }>`
      select variant, sum(exposures)::float8 as exposures, sum(succeeded)::float8 as succeeded, sum(failed)::float8 as failed,
        sum(cancelled)::float8 as cancelled, sum(served)::float8 as served, sum(cost_sum)::float8 as cost_sum, sum(cost_sq)::float8 as cost_sq,
        sum(pt_sum)::float8 as pt_sum, sum(pt_sq)::float8 as pt_sq, sum(ct_sum)::float8 as ct_sum, sum(ct_sq)::float8 as ct_sq
      from experiment_rollups
      where experiment_id = ${experimentId} ${tenantFilter}
      group by variant`.execute(trx);
    const buckets = await sql<{ variant: string; metric: 'latency' | 'ttft'; bucket: number; n: number }>`
      select variant, metric, bucket, sum(n)::float8 as n
      from experiment_histograms
      where experiment_id = ${experimentId} ${tenantFilter}
      group by variant, metric, bucket
      having sum(n) > 0
      order by variant, metric, bucket`.execute(trx);
    const feedback = await sql<{ variant: string; metric: string; kind: FeedbackSums['kind']; n: number; trues: number; s: number; sq: number }>`
      select variant, metric, kind, sum(n)::float8 as n, sum(trues)::float8 as trues, sum(s)::float8 as s, sum(sq)::float8 as sq
      from experiment_feedback_rollups
      where experiment_id = ${experimentId} ${tenantFilter}
      group by variant, metric, kind
      having sum(n) > 0
      order by metric, kind, variant`.execute(trx);
    return { totals: totals.rows, buckets: buckets.rows, feedback: feedback.rows };
  });
  const num = (v: string | number | null | undefined) => (v === null || v === undefined ? 0 : Number(v));
  const byVariant = new Map<string, VariantSums>();
  const variantOf = (name: string): VariantSums => {
    let v = byVariant.get(name);
    if (!v) {
      v = {
        variant: name, exposures: 0, succeeded: 0, failed: 0, cancelled: 0,
        costMicros: { n: 0, sum: 0, sumSquares: 0 }, promptTokens: { n: 0, sum: 0, sumSquares: 0 }, completionTokens: { n: 0, sum: 0, sumSquares: 0 },
        latencyN: 0, latencyHistogram: [], ttftN: 0, ttftHistogram: [],
      };
      byVariant.set(name, v);
    }
    return v;
  };
  for (const r of totals) {
    const v = variantOf(r.variant);
    v.exposures = num(r.exposures);
    v.succeeded = num(r.succeeded);
    v.failed = num(r.failed);
    v.cancelled = num(r.cancelled);
    v.costMicros = { n: v.exposures, sum: num(r.cost_sum), sumSquares: num(r.cost_sq) };
    const served = num(r.served);
    v.promptTokens = { n: served, sum: num(r.pt_sum), sumSquares: num(r.pt_sq) };
    v.completionTokens = { n: served, sum: num(r.ct_sum), sumSquares: num(r.ct_sq) };
  }
  for (const b of buckets) {
    const v = variantOf(b.variant);
    const n = num(b.n);
    if (b.metric === 'latency') {
      v.latencyN += n;
      v.latencyHistogram.push([Number(b.bucket), n]);
    } else {
      v.ttftN += n;
      v.ttftHistogram.push([Number(b.bucket), n]);
    }
  }
  return {
    variants: [...byVariant.values()].sort((a, b) => (a.variant < b.variant ? -1 : a.variant > b.variant ? 1 : 0)),
    feedback: feedback.map((r) => ({ variant: r.variant, metric: r.metric, kind: r.kind, n: num(r.n), trues: num(r.trues), sum: num(r.s), sumSquares: num(r.sq) })),
  };
}

/** Which of `ids` are keys of the tenant (targeting may name only those). */
export async function keysOfTenant(db: Db, tenantId: string, ids: readonly string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const rows = await db.selectFrom('api_keys').select('id').where('tenant_id', '=', tenantId).where('id', 'in', [...ids]).execute();
  return rows.map((r) => r.id);
}
