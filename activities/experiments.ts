/** The experiment step: sticky variant assignment and exposure recording. */
import type { Db } from '../db/database.js';
import type { VariantOverrides } from '../db/tables/index.js';
import { recordExposure, runningExperimentFor } from '../db/repositories/experiments.js';
import { assignVariant } from './experiment-assignment.js';

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
      const v = assignVariant(exp.id, input.subject, exp.variants);
      await recordExposure(deps.db, { requestId: input.requestId, experimentId: exp.id, tenantId: input.tenantId, subject: input.subject, variant: v.name });
      return { experimentId: exp.id, variant: v.name, overrides: v.overrides };
    },
  };
}
