/**
 * The steps one sync request's `admit` runs (issue 18 target 1): the very same step functions
 * (`auth.ts`, `experiments.ts`, `quota.ts`, `routing.ts`), over one statement that reads all they
 * look up for the requested model (`admissionFacts`): admission went from seven statements to two
 * (that read and `sluice_reserve`; plus the exposure inside an experiment). A lookup for another
 * model (a variant's) runs its own query, as before. A circuit read as closed admits the request
 * (as `acquireCircuit`'s own read does); any other goes through the step itself, so half-open
 * probes stay one at a time. The reads are of one instant, a moment before the reservation.
 * A batch's chunk has its own shared steps (`chunk-steps.ts`).
 */
import type { Db } from '../db/database.js';
import type { Metrics } from '../runtime/metrics.js';
import type { BreakerConfig } from '../domain/circuit-breaker.js';
import { admissionFacts } from '../db/repositories/admission-facts.js';
import { authorizationFacts } from '../db/repositories/keys.js';
import { promotedDefaultFor, runningExperimentsFor } from '../db/repositories/experiments.js';
import { activeDeployments, maxPriceForModel } from '../db/repositories/models.js';
import { reserve } from '../db/repositories/quota.js';
import { createAuthActivities } from './auth.js';
import { createExperimentActivities } from './experiments.js';
import { createQuotaActivities } from './quota.js';
import { acquireOverRead, createRoutingActivities } from './routing.js';
import type { AdmitInput, RequestSteps } from './admission.js';
import type { EventPublisher } from './events.js';

interface AdmitStepDeps {
  db: Db;
  now: () => Date;
  events: EventPublisher;
  metrics: Metrics | null;
  breaker: BreakerConfig;
}

/** Builds, per admitted request, `steps` over that request's prefetched reads. */
export function createAdmitSteps(deps: AdmitStepDeps, steps: RequestSteps): (input: AdmitInput) => Promise<RequestSteps> {
  return async (input) => {
    const facts = await admissionFacts(deps.db, { keyId: input.keyId, tenantId: input.tenantId, model: input.model, at: deps.now() });
    const ours = (model: string, tenantId = input.tenantId) => model === input.model && tenantId === input.tenantId;
    const auth = createAuthActivities({
      ...deps,
      repo: { authorizationFacts: async (db, keyId, model) => (keyId === input.keyId && ours(model) ? facts.authorization : authorizationFacts(db, keyId, model)) },
    });
    const experiments = createExperimentActivities({
      ...deps,
      repo: {
        runningExperimentsFor: async (db, model, tenantId) => (ours(model, tenantId) ? facts.running : runningExperimentsFor(db, model, tenantId)),
        promotedDefaultFor: async (db, model, tenantId) => (ours(model, tenantId) ? facts.promoted : promotedDefaultFor(db, model, tenantId)),
      },
    });
    const quota = createQuotaActivities({
      ...deps,
      repo: { maxPriceForModel: async (db, model, at) => (ours(model) ? facts.maxPrice : maxPriceForModel(db, model, at)), reserve },
    });
    const routing = createRoutingActivities({
      ...deps,
      repo: { activeDeployments: async (db, model) => (ours(model) ? facts.deployments : activeDeployments(db, model)) },
    });
    return {
      ...steps,
      authorize: auth.authorize,
      assignExperiment: experiments.assignExperiment,
      reserveQuota: quota.reserveQuota,
      planRoute: routing.planRoute,
      acquireCircuit: acquireOverRead((deploymentId) => facts.circuits.get(deploymentId), (i) => steps.acquireCircuit(i)),
    };
  };
}
