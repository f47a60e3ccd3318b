/**
 * A request's admission and completion, each as one activity that runs the workflow's steps in
 * order: `admit` = authorize → reserve quota → assign experiment → plan route → acquire the first
 * open circuit; `complete` = settle usage → circuit success → audit + outcome. Each step keeps its
 * own idempotent transaction (a retried activity repeats none of their effects), and the result
 * names what each step decided, so the history still shows every step.
 *
 * Why one activity and not five: each local activity costs a round trip through the SDK's
 * workflow thread (~8 ms here) and a history marker; folding took a request from 20 history events
 * to 14 and its p50 from 117 to 99 ms (BENCHMARKS.md).
 */
import type { Assignment } from './experiments.js';
import type { AuthorizeInput, AuthorizedModel } from './auth.js';
import type { ReserveQuotaInput } from './quota.js';
import type { SettleInput } from './ledger.js';
import type { OutcomeInput } from './audit.js';
import { fallbackOrder, type DeploymentTarget, type ItemResult } from '../workflows/contracts.js';
import { forEachItem } from './items.js';

/**
 * Items of a chunk admitted or completed at once: one tenant's reservations queue on its row lock
 * anyway, while the other steps' round trips overlap.
 */
const ITEM_CONCURRENCY = 8;

/** The steps `admit` and `complete` run: the control activities of the same names. */
export interface RequestSteps {
  authorize(input: AuthorizeInput): Promise<AuthorizedModel>;
  reserveQuota(input: ReserveQuotaInput): Promise<{ estCostMicros: number }>;
  releaseQuota(input: { requestId: string }): Promise<void>;
  assignExperiment(input: { requestId: string; tenantId: string; subject: string; model: string }): Promise<Assignment>;
  planRoute(input: { model: string }): Promise<DeploymentTarget[]>;
  acquireCircuit(input: { deploymentId: string }): Promise<boolean>;
  settle(input: SettleInput): Promise<{ costMicros: number }>;
  recordCircuit(input: { deploymentId: string; ok: boolean }): Promise<void>;
  recordOutcome(input: OutcomeInput): Promise<void>;
  recordOutcomes(inputs: readonly OutcomeInput[]): Promise<void>;
}

/** The outcome to record for a settled request: its summary gets the settled cost. */
function withCost(outcome: OutcomeInput, costMicros: number): OutcomeInput {
  return { ...outcome, summary: { ...outcome.summary, cost_micros: costMicros } };
}

/** `fn` answering each distinct key once (failures included): lookups that a chunk's lines share. */
function memoBy<I, O>(key: (input: I) => string, fn: (input: I) => Promise<O>): (input: I) => Promise<O> {
  const seen = new Map<string, Promise<O>>();
  return (input) => {
    const k = key(input);
    let p = seen.get(k);
    if (p === undefined) {
      p = fn(input);
      seen.set(k, p);
    }
    return p;
  };
}

export interface AdmitInput {
  requestId: string;
  tenantId: string;
  keyId: string;
  model: string;
  subject: string;
  promptTokensEstimate: number;
  /** The caller's `max_tokens`; null = the model's limit. */
  maxTokens: number | null;
}

export interface Admission {
  /** authorize: the model's limits. */
  authorized: AuthorizedModel;
  /** The request's max_tokens as reserved (the caller's, or the model's limit). */
  maxTokens: number;
  /** reserve: the worst-case cost held against the budget. */
  estCostMicros: number;
  /** experiment: the variant and its overrides (`variant: null` outside any experiment). */
  assignment: Assignment;
  /** route: the model's active deployments in this request's fallback order. */
  deployments: DeploymentTarget[];
  /** circuit: index in `deployments` of the first one whose circuit let the request in; -1 = all open. */
  acquired: number;
}

export interface CompleteInput {
  settle: SettleInput;
  /** The outcome to record; its summary gets the settled `cost_micros`. */
  outcome: OutcomeInput;
}

export function createAdmissionActivities(steps: RequestSteps, random: () => number = Math.random) {
  /** settle, then the success on the deployment's circuit. */
  async function settleAndClose(input: CompleteInput): Promise<{ costMicros: number }> {
    const settled = await steps.settle(input.settle);
    await steps.recordCircuit({ deploymentId: input.settle.deploymentId, ok: true });
    return settled;
  }
  const activities = {
    /**
     * Admits the request or refuses it with the step's own failure. A failure after the
     * reservation (assignment or routing could not reach the database) releases it before
     * rethrowing, so a refused request never holds quota.
     */
    async admit(input: AdmitInput): Promise<Admission> {
      const authorized = await steps.authorize({ requestId: input.requestId, tenantId: input.tenantId, keyId: input.keyId, model: input.model });
      const maxTokens = input.maxTokens ?? authorized.maxOutputTokens;
      const { estCostMicros } = await steps.reserveQuota({
        requestId: input.requestId, tenantId: input.tenantId, model: input.model, promptTokensEstimate: input.promptTokensEstimate, maxTokens,
      });
      try {
        const assignment = await steps.assignExperiment({ requestId: input.requestId, tenantId: input.tenantId, subject: input.subject, model: input.model });
        const deployments = fallbackOrder(await steps.planRoute({ model: assignment.overrides.model ?? input.model }), random);
        let acquired = -1;
        for (const [i, d] of deployments.entries()) {
          if (await steps.acquireCircuit({ deploymentId: d.id })) {
            acquired = i;
            break;
          }
        }
        return { authorized, maxTokens, estCostMicros, assignment, deployments, acquired };
      } catch (err) {
        await steps.releaseQuota({ requestId: input.requestId });
        throw err;
      }
    },

    /**
     * Settles the usage (exactly once per request and step), records the deployment's success on
     * its circuit (the pipeline records failures with the same step), then audits and records the outcome.
     */
    async complete(input: CompleteInput): Promise<{ costMicros: number }> {
      const { costMicros } = await settleAndClose(input);
      await steps.recordOutcome(withCost(input.outcome, costMicros));
      return { costMicros };
    },
  };
  return {
    ...activities,
    /**
     * `admit` for each of a chunk of batch lines (see `forEachItem`), in one activity. The chunk's
     * lines share their key's authorization and their model's route, looked up once for all of
     * them (the same decision each line would get a moment apart); each line still reserves,
     * is assigned and acquires its circuit on its own.
     */
    async admitLines(input: { items: AdmitInput[] }): Promise<ItemResult<Admission>[]> {
      const shared = createAdmissionActivities({
        ...steps,
        authorize: memoBy((i) => JSON.stringify([i.tenantId, i.keyId, i.model]), steps.authorize),
        planRoute: memoBy((i) => i.model, steps.planRoute),
      }, random);
      return forEachItem(input.items, ITEM_CONCURRENCY, shared.admit);
    },
    /**
     * `complete` for each of a chunk of batch lines, in one activity: each line settled on its
     * own (and its circuit success recorded), then the settled lines' outcomes audited and
     * recorded together (`recordOutcomes`).
     */
    async completeLines(input: { items: CompleteInput[] }): Promise<ItemResult<{ costMicros: number }>[]> {
      const settled = await forEachItem(input.items, ITEM_CONCURRENCY, settleAndClose);
      await steps.recordOutcomes(input.items.flatMap((item, i) => {
        const r = settled[i];
        return r?.ok ? [withCost(item.outcome, r.value.costMicros)] : [];
      }));
      return settled;
    },
  };
}
