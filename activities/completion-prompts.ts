/**
 * The settle step of one prompt of a legacy completion with several prompts (`prompt: [...]`),
 * all under the request's one reservation: the prompt's usage row (step `infer` for the first,
 * `infer:<i>` for the others) priced and written exactly once, the deployment's success on its
 * circuit, an audit row for the prompt (`request.prompt_settled`: tokens and cost, no text), and
 * on the last prompt the request's outcome. A prompt before the last leaves the reservation held
 * with its spending taken off (`sluice_settle_part`); the last settles and closes it.
 */
import { appendAudit } from '../db/repositories/audit.js';
import { priceFor } from '../db/repositories/billing.js';
import { settle } from '../db/repositories/quota.js';
import type { Db } from '../db/database.js';
import type { Metrics } from '../runtime/metrics.js';
import type { OutcomeInput } from './audit.js';
import type { EventPublisher } from './events.js';
import type { RequestSteps } from './admission.js';
import { createLedgerActivities, type SettleInput } from './ledger.js';

interface CompletePromptInput {
  settle: SettleInput;
  /** The prompt's index in the request (its choice's `index`). */
  prompt: number;
  /** The request's outcome, on its last prompt (its summary gets the request's total cost); null on the others. */
  outcome: OutcomeInput | null;
  /** What the request's prompts before this one cost, as settled. */
  costBefore: number;
}

export function createCompletionPromptActivities(
  deps: { db: Db; now: () => Date; events: EventPublisher; metrics: Metrics | null },
  steps: Pick<RequestSteps, 'settle' | 'recordCircuit' | 'recordOutcome'>,
) {
  const part = createLedgerActivities({ ...deps, repo: { priceFor, settle: (db, usage) => settle(db, usage, true) } });
  return {
    /** Settles, records the circuit's success and audits one prompt (and the request's outcome on the last); idempotent. */
    async completePrompt(input: CompletePromptInput): Promise<{ costMicros: number }> {
      const s = input.settle;
      const { costMicros } = await (input.outcome === null ? part.settle(s) : steps.settle(s));
      await steps.recordCircuit({ deploymentId: s.deploymentId, ok: true });
      await appendAudit(deps.db, {
        actor: `key:${s.keyId}`, tenantId: s.tenantId, action: 'request.prompt_settled', target: `request:${s.requestId}`,
        data: {
          kind: s.kind, prompt_index: input.prompt, step: s.step, model: s.model, deployment: s.deploymentId, pool: s.pool, variant: s.variant,
          prompt_tokens: s.promptTokens, completion_tokens: s.completionTokens, cost_micros: costMicros,
        },
        idempotencyKey: `request:${s.requestId}:${s.step}`, at: deps.now(),
      });
      if (input.outcome !== null) {
        await steps.recordOutcome({ ...input.outcome, summary: { ...input.outcome.summary, cost_micros: input.costBefore + costMicros } });
      }
      return { costMicros };
    },
  };
}
