/**
 * The request steps as a batch's chunk of lines runs them (`admitLines`, `completeLines`): the
 * very same step functions (`quota.ts`, `ledger.ts`, `experiments.ts`, `routing.ts`), over
 * repository calls the chunk's lines share. Per chunk instead of per line:
 * - one instant: the chunk's lines are priced, windowed and dated at the same moment;
 * - lookups once per distinct key: the model's highest price, the deployment's price for the
 *   tenant, the running experiments and promoted default of the model for the tenant, and a
 *   closed circuit (a circuit that is not closed goes through the step itself, line by line,
 *   so half-open probes stay one at a time);
 * - reserve and settle of the lines due together as one call each (`reserveMany`,
 *   `settleMany`: one round trip, each line admitted or settled on its own);
 * - a deployment's success recorded once (a success is idempotent: it closes the circuit).
 * A sync request runs the steps alone (`createControlActivities`).
 */
import type { Db } from '../db/database.js';
import type { Metrics } from '../runtime/metrics.js';
import type { BreakerConfig } from '../domain/circuit-breaker.js';
import { maxPriceForModel } from '../db/repositories/models.js';
import { priceFor } from '../db/repositories/billing.js';
import { promotedDefaultFor, runningExperimentsFor } from '../db/repositories/experiments.js';
import { readCircuit } from '../db/repositories/circuit.js';
import { reserveMany, settleMany, type ReserveInput, type UsageInput } from '../db/repositories/quota.js';
import { createQuotaActivities } from './quota.js';
import { createLedgerActivities } from './ledger.js';
import { createExperimentActivities } from './experiments.js';
import { acquireOverRead } from './routing.js';
import type { RequestSteps } from './admission.js';
import type { EventPublisher } from './events.js';
import { batchCalls, memoBy } from './chunk-calls.js';

export interface ChunkStepDeps {
  db: Db;
  now: () => Date;
  events: EventPublisher;
  metrics: Metrics | null;
  breaker: BreakerConfig;
}

/** Steps for one chunk (build one per `admitLines` / `completeLines` call): `steps` with the chunk's shared and batched calls. */
export function createChunkSteps(deps: ChunkStepDeps, steps: RequestSteps): RequestSteps {
  const at = deps.now();
  const now = () => at;
  const db = deps.db;
  const reserveBatch = batchCalls((inputs: ReserveInput[]) => reserveMany(db, inputs));
  const settleBatch = batchCalls((inputs: UsageInput[]) => settleMany(db, inputs));
  const maxPrice = memoBy((model: string) => model, (model) => maxPriceForModel(db, model, at));
  const price = memoBy((k: { tenantId: string; deploymentId: string }) => JSON.stringify([k.tenantId, k.deploymentId]), (k) => priceFor(db, k.tenantId, k.deploymentId, at));
  const running = memoBy((k: { model: string; tenantId: string }) => JSON.stringify([k.model, k.tenantId]), (k) => runningExperimentsFor(db, k.model, k.tenantId));
  const promoted = memoBy((k: { model: string; tenantId: string }) => JSON.stringify([k.model, k.tenantId]), (k) => promotedDefaultFor(db, k.model, k.tenantId));
  const circuit = memoBy((deploymentId: string) => deploymentId, (deploymentId) => readCircuit(db, deploymentId));
  const succeeded = memoBy((deploymentId: string) => deploymentId, (deploymentId) => steps.recordCircuit({ deploymentId, ok: true }));

  const quota = createQuotaActivities({
    ...deps, now,
    repo: { maxPriceForModel: (_db, model) => maxPrice(model), reserve: (_db, input) => reserveBatch(input) },
  });
  const ledger = createLedgerActivities({
    ...deps, now,
    repo: { priceFor: (_db, tenantId, deploymentId) => price({ tenantId, deploymentId }), settle: (_db, usage) => settleBatch(usage) },
  });
  const experiments = createExperimentActivities({
    db, now,
    repo: { runningExperimentsFor: (_db, model, tenantId) => running({ model, tenantId }), promotedDefaultFor: (_db, model, tenantId) => promoted({ model, tenantId }) },
  });
  return {
    ...steps,
    reserveQuota: quota.reserveQuota,
    settle: ledger.settle,
    assignExperiment: experiments.assignExperiment,
    acquireCircuit: acquireOverRead(circuit, (input) => steps.acquireCircuit(input)),
    async recordCircuit(input) {
      if (input.ok) return succeeded(input.deploymentId);
      return steps.recordCircuit(input);
    },
  };
}
