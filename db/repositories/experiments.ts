/** Experiments, their variants and exposures. */
import type { Db } from '../database.js';
import type { VariantOverrides } from '../tables/index.js';
import { newId } from '../../domain/ids.js';

export interface ExperimentWithVariants {
  id: string;
  name: string;
  model: string;
  tenantId: string | null;
  status: 'running' | 'stopped';
  variants: Array<{ name: string; weight: number; overrides: VariantOverrides }>;
}

/** The running experiment on a model for a tenant: the tenant's own first, else a global one. */
export async function runningExperimentFor(db: Db, model: string, tenantId: string): Promise<ExperimentWithVariants | null> {
  const exp = await db
    .selectFrom('experiments')
    .selectAll()
    .where('model', '=', model)
    .where('status', '=', 'running')
    .where((eb) => eb.or([eb('tenant_id', '=', tenantId), eb('tenant_id', 'is', null)]))
    .orderBy((eb) => eb.case().when('tenant_id', 'is', null).then(1).else(0).end())
    .orderBy('created_at', 'desc')
    .limit(1)
    .executeTakeFirst();
  if (!exp) return null;
  const variants = await db.selectFrom('experiment_variants').selectAll().where('experiment_id', '=', exp.id).execute();
  return {
    id: exp.id, name: exp.name, model: exp.model, tenantId: exp.tenant_id, status: exp.status,
    variants: variants.map((v) => ({ name: v.name, weight: v.weight, overrides: v.overrides })),
  };
}

export async function createExperiment(
  db: Db,
  input: { name: string; model: string; tenantId: string | null; variants: Array<{ name: string; weight: number; overrides: VariantOverrides }> },
): Promise<ExperimentWithVariants> {
  return db.transaction().execute(async (trx) => {
    const exp = await trx
      .insertInto('experiments')
      .values({ id: newId('exp'), name: input.name, model: input.model, tenant_id: input.tenantId })
      .returningAll()
      .executeTakeFirstOrThrow();
    for (const v of input.variants) {
      await trx
        .insertInto('experiment_variants')
        .values({ experiment_id: exp.id, name: v.name, weight: v.weight, overrides: JSON.stringify(v.overrides) })
        .execute();
    }
    return { id: exp.id, name: exp.name, model: exp.model, tenantId: exp.tenant_id, status: exp.status, variants: input.variants };
  });
}

export async function listExperiments(db: Db, tenantId: string | null): Promise<ExperimentWithVariants[]> {
  let q = db.selectFrom('experiments').selectAll();
  if (tenantId !== null) q = q.where((eb) => eb.or([eb('tenant_id', '=', tenantId), eb('tenant_id', 'is', null)]));
  const exps = await q.orderBy('created_at').execute();
  if (exps.length === 0) return [];
  const variants = await db.selectFrom('experiment_variants').selectAll().where('experiment_id', 'in', exps.map((e) => e.id)).execute();
  return exps.map((e) => ({
    id: e.id, name: e.name, model: e.model, tenantId: e.tenant_id, status: e.status,
    variants: variants.filter((v) => v.experiment_id === e.id).map((v) => ({ name: v.name, weight: v.weight, overrides: v.overrides })),
  }));
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
