/**
 * What a sync request's admission reads, in one statement (issue 18 target 1): the key, tenant and
 * model of `authorize`, the running experiments (with their variants) and the promoted default of
 * `assignExperiment`, the price ceiling of `reserveQuota`, the deployments of `planRoute` and their
 * circuits of `acquireCircuit` — each the very query its own repository function runs, here as a
 * JSON column of one `select` (it took six statements). Each part is turned back into what its
 * function returns: JSON carries timestamps as text, so their columns are made dates again.
 * `json_agg` over an ordered subquery keeps its order (deployments in fallback order, experiments
 * in the order they are tried).
 */
import { jsonArrayFrom, jsonObjectFrom } from 'kysely/helpers/postgres';
import type { Db } from '../database.js';
import { preparedQuery } from '../prepared-query.js';
import type { BreakerState } from '../../domain/circuit-breaker.js';
import type { TokenPrice } from '../../domain/cost.js';
import type { CircuitRow, Deployment, ExperimentRow } from '../tables/index.js';
import { authorizationFactsQuery, toAuthorizationFacts, type AuthorizationFacts, type AuthorizationFactsRow } from './keys.js';
import {
  promotedDefaultQuery, runningExperimentsQuery, variantsQuery, withVariants, type ExperimentVariant, type ExperimentWithVariants, type PromotedDefault,
} from './experiments.js';
import { activeDeploymentsOf, activeDeploymentsQuery, maxPriceQuery, toTokenPrice } from './models.js';
import { toState } from './circuit.js';

export interface AdmissionFacts {
  /** `authorizationFacts(keyId, model)`. */
  authorization: AuthorizationFacts | null;
  /** `runningExperimentsFor(model, tenantId)`. */
  running: ExperimentWithVariants[];
  /** `promotedDefaultFor(model, tenantId)`. */
  promoted: PromotedDefault | null;
  /** `maxPriceForModel(model, at)`. */
  maxPrice: TokenPrice;
  /** `activeDeployments(model)`. */
  deployments: Deployment[];
  /** `readCircuit` of each of those deployments (absent: never recorded). */
  circuits: Map<string, BreakerState>;
}

/** A timestamp column as JSON gave it back. */
function dateOf(v: unknown): Date {
  return v instanceof Date ? v : new Date(v as string);
}
function dateOrNull(v: unknown): Date | null {
  return v === null || v === undefined ? null : dateOf(v);
}

/**
 * The statement of {@link admissionFacts}, built and compiled once (`db/prepared-query.ts`): its
 * six JSON columns keep their type whatever a migration adds to the tables under them.
 */
const admissionFactsQuery = preparedQuery(
  { keyId: 'string', tenantId: 'string', model: 'string', at: 'date' },
  (db, { keyId, tenantId, model, at }) => db.selectNoFrom((eb) => [
    jsonObjectFrom(authorizationFactsQuery(db, keyId, model)).as('authorization'),
    jsonArrayFrom(runningExperimentsQuery(db, model, tenantId).select((e) => [
      jsonArrayFrom(variantsQuery(db).whereRef('experiment_variants.experiment_id', '=', e.ref('experiments.id'))).as('variants'),
    ])).as('running'),
    jsonObjectFrom(promotedDefaultQuery(db, model, tenantId)).as('promoted'),
    jsonObjectFrom(maxPriceQuery(db, model, at)).as('max_price'),
    jsonArrayFrom(activeDeploymentsQuery(db, model)).as('deployments'),
    jsonArrayFrom(eb.selectFrom('circuit_state').selectAll().where('deployment_id', 'in', activeDeploymentsOf(db, model).select('id'))).as('circuits'),
  ]),
);

/** The reads of one request's admission for `model` at `at`, in one round trip. */
export async function admissionFacts(db: Db, input: { keyId: string; tenantId: string; model: string; at: Date }): Promise<AdmissionFacts> {
  const { rows } = await db.executeQuery(admissionFactsQuery(db, input));
  const row = rows[0];
  if (!row) throw new Error('admissionFacts returned no row');
  const auth = row.authorization as (AuthorizationFactsRow & Record<string, unknown>) | null;
  const running = row.running as unknown as Array<ExperimentRow & { variants: ExperimentVariant[] }>;
  const promoted = row.promoted as { id: string; name: string; overrides: PromotedDefault['overrides'] } | null;
  const circuits = row.circuits as unknown as CircuitRow[];
  return {
    authorization: auth ? toAuthorizationFacts({ ...auth, revoked_at: dateOrNull(auth.revoked_at), expires_at: dateOrNull(auth.expires_at) }) : null,
    running: running.map((e) => withVariants({
      ...e, starts_at: dateOrNull(e.starts_at), ends_at: dateOrNull(e.ends_at), promoted_at: dateOrNull(e.promoted_at),
      created_at: dateOf(e.created_at), updated_at: dateOf(e.updated_at),
    }, e.variants)),
    promoted: promoted ? { experimentId: promoted.id, variant: promoted.name, overrides: promoted.overrides } : null,
    // An aggregate without `group by` is one row whatever it finds (0s with no price): never null.
    maxPrice: toTokenPrice(row.max_price as NonNullable<typeof row.max_price>),
    deployments: (row.deployments as unknown as Deployment[]).map((d) => ({ ...d, created_at: dateOf(d.created_at) })),
    circuits: new Map(circuits.map((c) => [c.deployment_id, toState({
      ...c, window_started_at: dateOf(c.window_started_at), opened_at: dateOrNull(c.opened_at), probe_started_at: dateOrNull(c.probe_started_at),
    })])),
  };
}
