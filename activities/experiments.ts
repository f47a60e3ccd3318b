/** The experiment step: sticky variant assignment and exposure recording. */
import type { Db } from '../db/database.js';
import type { VariantOverrides } from '../db/tables/index.js';
import { recordExposure, runningExperimentFor } from '../db/repositories/experiments.js';
import { assignVariant } from '../domain/experiment-assignment.js';
import { requestFailure } from './failures.js';

export interface Assignment {
  experimentId: string | null;
  variant: string | null;
  overrides: VariantOverrides;
}

export function createExperimentActivities(deps: { db: Db }) {
  return {
    async assignExperiment(input: { requestId: string; tenantId: string; subject: string; model: string }): Promise<Assignment> {
      const exp = await runningExperimentFor(deps.db, input.model, input.tenantId);
      if (!exp || exp.variants.length === 0) return { experimentId: null, variant: null, overrides: {} };
      // A stored experiment no variant can be picked from (weights written past the API) fails the
      // request at once: the same on every retry.
      let v: (typeof exp.variants)[number];
      try {
        v = assignVariant(exp.id, input.subject, exp.variants);
      } catch {
        throw requestFailure('BadRequest', `experiment ${exp.id} has no variant with a positive weight`, { code: 'invalid_experiment_variant' });
      }
      await recordExposure(deps.db, { requestId: input.requestId, experimentId: exp.id, tenantId: input.tenantId, subject: input.subject, variant: v.name });
      return { experimentId: exp.id, variant: v.name, overrides: v.overrides };
    },
  };
}
