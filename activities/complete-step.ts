/**
 * One request's `complete` in one round trip (issue 18 target 1): the settle, the outcome on the
 * request row and its audit row in one statement (`completeRequest`, `sluice_complete`), then in
 * this process what the separate steps did after theirs (`afterSettle`, `afterOutcomes`). The
 * deployment's success on its circuit changes nothing when the circuit is closed and clean (the
 * statement reads it); otherwise the breaker's own step records it (`recordCircuit`: a half-open
 * probe's success closes it), after the commit: a retry finds the settle, outcome and audit done
 * and records the circuit again. Replaces `settle` → `recordCircuit` → `recordOutcome` (five
 * statements); the activity's name, input and result are unchanged, so histories replay.
 * A chunk of batch lines keeps its batched steps (`completeLines`).
 */
import type { Db } from '../db/database.js';
import type { Metrics } from '../runtime/metrics.js';
import type { Logger } from '../runtime/logger.js';
import { completeRequest } from '../db/repositories/completion.js';
import { afterOutcomes, outcomeEntry, requestOutcomeOf, safeOutcome } from './audit.js';
import { afterSettle } from './ledger.js';
import { withCost, type CompleteInput, type RequestSteps } from './admission.js';
import type { EventPublisher } from './events.js';

export interface CompleteStepDeps {
  db: Db;
  now: () => Date;
  events: EventPublisher;
  metrics: Metrics | null;
  log: Logger | null;
}

/** `complete` over one `sluice_complete`; `steps.recordCircuit` for a circuit that is not clean. */
export function createCompleteStep(deps: CompleteStepDeps, steps: Pick<RequestSteps, 'recordCircuit'>) {
  return async function complete(input: CompleteInput): Promise<{ costMicros: number }> {
    const outcome = safeOutcome(deps, input.outcome);
    const r = await completeRequest(deps.db, { usage: input.settle, audit: outcomeEntry(outcome, deps.now()), outcome: requestOutcomeOf(outcome) });
    await afterSettle(deps, input.settle, r);
    if (r.circuitClean) deps.metrics?.breakerState.set({ deployment: input.settle.deploymentId }, 0);
    else await steps.recordCircuit({ deploymentId: input.settle.deploymentId, ok: true });
    await afterOutcomes(deps, [withCost(outcome, r.costMicros)], r.finished ? [r.finished] : []);
    return { costMicros: r.costMicros };
  };
}
