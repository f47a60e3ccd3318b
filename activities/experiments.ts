/**
 * The experiment step: which running experiment a request enters (window, targeting, traffic
 * allocation: `domain/experiment-lifecycle.ts`), its sticky variant and the exposure; a request
 * that enters none gets the model's promoted default, if a promotion set one, uncounted.
 */
import type { Db } from '../db/database.js';
import type { VariantOverrides } from '../db/tables/index.js';
import { promotedDefaultFor, recordExposure, runningExperimentsFor } from '../db/repositories/experiments.js';
import { assignVariant } from '../domain/experiment-assignment.js';
import { eligibility } from '../domain/experiment-lifecycle.js';
import { requestFailure } from './failures.js';

export interface Assignment {
  experimentId: string | null;
  variant: string | null;
  overrides: VariantOverrides;
  /**
   * Outside any experiment, the promotion whose variant's overrides are the model's default now
   * (`experimentId`/`variant` stay null: nothing is counted). Absent when there is none.
   */
  defaultFrom?: { experimentId: string; variant: string };
}

export interface AssignExperimentInput {
  requestId: string;
  tenantId: string;
  /** The key that sent the request (targeting by key). */
  keyId?: string;
  subject: string;
  model: string;
  /** The request's metadata (targeting by metadata match). @default none */
  metadata?: Record<string, string> | null;
}

/** The lookups the experiment step makes; a batch's chunk passes shared ones (`chunk-steps.ts`). */
export interface ExperimentRepo {
  runningExperimentsFor: typeof runningExperimentsFor;
  promotedDefaultFor: typeof promotedDefaultFor;
}

export function createExperimentActivities(deps: { db: Db; now?: () => Date; repo?: ExperimentRepo }) {
  const now = deps.now ?? (() => new Date());
  const repo = deps.repo ?? { runningExperimentsFor, promotedDefaultFor };
  return {
    async assignExperiment(input: AssignExperimentInput): Promise<Assignment> {
      const at = now();
      const candidates = await repo.runningExperimentsFor(deps.db, input.model, input.tenantId);
      // The first experiment whose window and targeting take the request decides: inside its
      // allocation the request is assigned; outside, it gets the default (it does not fall through
      // to another experiment, which would bias that one's population).
      for (const exp of candidates) {
        if (exp.variants.length === 0) continue;
        const decision = eligibility(exp, { keyId: input.keyId ?? '', subject: input.subject, metadata: input.metadata ?? null, now: at });
        if (decision === 'not_running' || decision === 'outside_window' || decision === 'not_targeted') continue;
        if (decision === 'not_allocated') break;
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
      }
      const promoted = await repo.promotedDefaultFor(deps.db, input.model, input.tenantId);
      if (promoted) return { experimentId: null, variant: null, overrides: promoted.overrides, defaultFrom: { experimentId: promoted.experimentId, variant: promoted.variant } };
      return { experimentId: null, variant: null, overrides: {} };
    },
  };
}
