/**
 * A request's admission and completion, each as one activity that runs the workflow's steps in
 * order: `admit` = authorize the requested model → assign experiment → authorize the effective
 * model → reserve quota on the effective model and max_tokens → plan route → acquire the first
 * open circuit; `complete` = settle usage → circuit success → audit + outcome. Each step keeps its
 * own idempotent transaction (a retried activity repeats none of their effects), and the result
 * names what each step decided, so the history still shows every step.
 *
 * Why this order: a variant may change the model and `max_tokens`, so it is authorized and
 * priced like a request for its own model — the same `authorize` (key active, role and `model:`
 * scopes, tenant active and its `allowed_models`, model exists) runs on the effective model, and
 * the reservation holds the effective model's price for the effective `max_tokens` (the variant's,
 * else the caller's, else the model's limit; clamped to the effective model's limit, since the
 * caller chose the requested model's). The requested model is authorized first, so a caller
 * learns nothing of experiments on models it may not use, and the assignment (its exposure row)
 * comes before the reservation, which needs its result. A variant refused here fails the request
 * before anything is reserved (exposure recorded, nothing billed). Sampling values (temperature,
 * top_p) are not priced or authorized: they are checked where they enter and again at the backend
 * boundary (domain/sampling-params.ts), which every path reaches.
 *
 * Why one activity and not five: each local activity costs a round trip through the SDK's
 * workflow thread (~8 ms here) and a history marker; folding took a request from 20 history events
 * to 14 and its p50 from 117 to 99 ms (BENCHMARKS.md).
 */
import type { AssignExperimentInput, Assignment } from './experiments.js';
import type { AuthorizeInput, AuthorizedModel } from './auth.js';
import type { ReserveQuotaInput } from './quota.js';
import type { SettleInput } from './ledger.js';
import type { OutcomeInput } from './audit.js';
import type { DeploymentTarget } from '../contracts/chat.js';
import type { ItemResult } from '../contracts/failures.js';
import { fallbackOrder } from '../domain/routing.js';
import { checkPromptOverride } from '../domain/experiment-prompt.js';
import { forEachItem } from './items.js';
import { memoBy } from './chunk-calls.js';
import { requestFailure } from './failures.js';
import { ApplicationFailure } from '@temporalio/common';
import type { FailureDetails } from '../contracts/failures.js';

/**
 * Items of a chunk admitted or completed at once without `chunkSteps`: one tenant's reservations
 * queue on its row lock anyway, while the other steps' round trips overlap. With them every item
 * runs at once: their lookups are shared and their reserves and settles go as one call.
 */
const ITEM_CONCURRENCY = 8;

/** The steps `admit` and `complete` run: the control activities of the same names. */
export interface RequestSteps {
  authorize(input: AuthorizeInput): Promise<AuthorizedModel>;
  reserveQuota(input: ReserveQuotaInput): Promise<{ estCostMicros: number }>;
  releaseQuota(input: { requestId: string }): Promise<void>;
  assignExperiment(input: AssignExperimentInput): Promise<Assignment>;
  planRoute(input: { model: string }): Promise<DeploymentTarget[]>;
  acquireCircuit(input: { deploymentId: string }): Promise<boolean>;
  settle(input: SettleInput): Promise<{ costMicros: number }>;
  recordCircuit(input: { deploymentId: string; ok: boolean }): Promise<void>;
  recordOutcome(input: OutcomeInput): Promise<void>;
  recordOutcomes(inputs: readonly OutcomeInput[]): Promise<void>;
}

/** The outcome to record for a settled request: its summary gets the settled cost. */
export function withCost(outcome: OutcomeInput, costMicros: number): OutcomeInput {
  return { ...outcome, summary: { ...outcome.summary, cost_micros: costMicros } };
}

export interface AdmitInput {
  requestId: string;
  tenantId: string;
  keyId: string;
  model: string;
  subject: string;
  /** The request's `metadata`, for experiment targeting. @default none */
  metadata?: Record<string, string>;
  promptTokensEstimate: number;
  /** The caller's `max_tokens`; null = the model's limit (0 for embeddings: no completion tokens). */
  maxTokens: number | null;
  /** What the request asks of the model (the requested and the variant's must serve it). @default 'chat' */
  endpoint?: 'chat' | 'embeddings';
  /**
   * Generations the request makes under this one admission (a legacy completion's prompts):
   * the reservation holds `maxTokens` for each (`promptTokensEstimate` is already their sum).
   * @default 1
   */
  generations?: number;
}

export interface Admission {
  /** authorize: the effective model's limits (the variant's model, else the requested one). */
  authorized: AuthorizedModel;
  /** The request's effective max_tokens as reserved (the variant's, the caller's, or the model's limit; at most the limit). */
  maxTokens: number;
  /** reserve: the worst-case cost held against the budget. */
  estCostMicros: number;
  /**
   * experiment: the variant and its overrides (`variant: null` outside any experiment), with
   * `model` and `max_tokens` as authorized and reserved.
   */
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

/**
 * The model and max_tokens a variant sets (stored values are checked again here: a row may not
 * have passed the API's check). A malformed one fails the request as the experiment's fault.
 */
function variantChanges(a: Assignment, requestedModel: string): { model: string; maxTokens: number | null } {
  const bad = (what: string) => requestFailure('BadRequest', `experiment variant ${a.variant ?? ''} has invalid ${what}`, { code: 'invalid_experiment_variant' });
  const raw: unknown = a.overrides;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('overrides (not an object)');
  const { model, max_tokens: maxTokens } = raw as { model?: unknown; max_tokens?: unknown };
  if (model !== undefined && model !== null && (typeof model !== 'string' || model === '')) throw bad('model override');
  if (maxTokens !== undefined && maxTokens !== null && !(Number.isSafeInteger(maxTokens) && (maxTokens as number) >= 1)) throw bad('max_tokens override');
  // The prompt overrides reach the workflow's message list: only text that passed the creation check.
  for (const key of ['system_prompt', 'system_template'] as const) {
    const v = (raw as Record<string, unknown>)[key];
    if (v === undefined) continue;
    try {
      checkPromptOverride(v, key, key);
    } catch {
      throw bad(`${key} override`);
    }
  }
  if ((raw as Record<string, unknown>).system_prompt !== undefined && (raw as Record<string, unknown>).system_template !== undefined) throw bad('prompt overrides (both set)');
  return { model: typeof model === 'string' ? model : requestedModel, maxTokens: typeof maxTokens === 'number' ? maxTokens : null };
}

/** A refusal of the variant's model, said as such (same type and code: 403 `model_not_allowed`, 404 `model_not_found`). */
function forVariant(err: unknown, variant: string | null): unknown {
  if (!(err instanceof ApplicationFailure) || !err.nonRetryable) return err;
  const details = (err.details?.[0] ?? null) as FailureDetails | null;
  return requestFailure((err.type ?? 'PermissionDenied') as Parameters<typeof requestFailure>[0], `experiment variant ${variant ?? ''}: ${err.message}`, {
    code: details?.code ?? null, param: null,
  });
}

/**
 * `chunkSteps` builds the steps one chunk of batch lines runs (`createChunkSteps`: lookups shared
 * by the chunk's lines, reserves and settles batched into one call); without it a chunk's lines
 * run `steps` as they are, `ITEM_CONCURRENCY` at a time. `admitSteps` builds the steps one request's
 * `admit` runs (`createAdmitSteps`: its lookups read in one statement); without it, `steps`.
 * `completeOne` is one request's `complete` (`createCompleteStep`: one statement); without it,
 * `steps`' settle, circuit and outcome one after the other.
 */
export function createAdmissionActivities(
  steps: RequestSteps, random: () => number = Math.random, chunkSteps?: () => RequestSteps, admitSteps?: (input: AdmitInput) => Promise<RequestSteps>,
  completeOne?: (input: CompleteInput) => Promise<{ costMicros: number }>,
) {
  /** settle, then the success on the deployment's circuit. */
  async function settleAndClose(input: CompleteInput, s: RequestSteps = steps): Promise<{ costMicros: number }> {
    const settled = await s.settle(input.settle);
    await s.recordCircuit({ deploymentId: input.settle.deploymentId, ok: true });
    return settled;
  }
  const chunkConcurrency = (items: readonly unknown[]) => (chunkSteps ? items.length : ITEM_CONCURRENCY);
  const activities = {
    /**
     * Admits the request or refuses it with the step's own failure (see the order at the top).
     * A failure after the reservation (routing could not reach the database) releases it before
     * rethrowing, so a refused request never holds quota.
     */
    async admit(input: AdmitInput): Promise<Admission> {
      const s = admitSteps ? await admitSteps(input) : steps;
      const base = { requestId: input.requestId, tenantId: input.tenantId, keyId: input.keyId };
      const endpoint = input.endpoint ? { endpoint: input.endpoint } : {};
      const requested = await s.authorize({ ...base, ...endpoint, model: input.model });
      const assigned = await s.assignExperiment({ ...base, subject: input.subject, model: input.model, metadata: input.metadata ?? null });
      const variant = variantChanges(assigned, input.model);
      const authorized = variant.model === input.model
        ? requested
        : await s.authorize({ ...base, ...endpoint, model: variant.model }).catch((err: unknown) => { throw forVariant(err, assigned.variant); });
      const maxTokens = Math.min(variant.maxTokens ?? input.maxTokens ?? authorized.maxOutputTokens, authorized.maxOutputTokens);
      const assignment: Assignment = {
        ...assigned,
        overrides: {
          ...assigned.overrides,
          ...(assigned.overrides.model !== undefined ? { model: variant.model } : {}),
          ...(assigned.overrides.max_tokens !== undefined ? { max_tokens: maxTokens } : {}),
        },
      };
      const { estCostMicros } = await s.reserveQuota({
        requestId: input.requestId, tenantId: input.tenantId, model: variant.model, promptTokensEstimate: input.promptTokensEstimate,
        maxTokens: maxTokens * (input.generations ?? 1),
      });
      try {
        const deployments = fallbackOrder(await s.planRoute({ model: variant.model }), random);
        let acquired = -1;
        for (const [i, d] of deployments.entries()) {
          if (await s.acquireCircuit({ deploymentId: d.id })) {
            acquired = i;
            break;
          }
        }
        return { authorized, maxTokens, estCostMicros, assignment, deployments, acquired };
      } catch (err) {
        await s.releaseQuota({ requestId: input.requestId });
        throw err;
      }
    },

    /**
     * Settles the usage (exactly once per request and step), records the deployment's success on
     * its circuit (the pipeline records failures with the same step), then audits and records the outcome.
     */
    async complete(input: CompleteInput): Promise<{ costMicros: number }> {
      if (completeOne) return completeOne(input);
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
      const base = chunkSteps?.() ?? steps;
      const shared = createAdmissionActivities({
        ...base,
        authorize: memoBy((i) => JSON.stringify([i.tenantId, i.keyId, i.model]), base.authorize),
        planRoute: memoBy((i) => i.model, base.planRoute),
      }, random);
      return forEachItem(input.items, chunkConcurrency(input.items), shared.admit);
    },
    /**
     * `complete` for each of a chunk of batch lines, in one activity: each line settled on its
     * own (and its circuit success recorded), then the settled lines' outcomes audited and
     * recorded together (`recordOutcomes`).
     */
    async completeLines(input: { items: CompleteInput[] }): Promise<ItemResult<{ costMicros: number }>[]> {
      const s = chunkSteps?.() ?? steps;
      const settled = await forEachItem(input.items, chunkConcurrency(input.items), (item) => settleAndClose(item, s));
      await steps.recordOutcomes(input.items.flatMap((item, i) => {
        const r = settled[i];
        return r?.ok ? [withCost(item.outcome, r.value.costMicros)] : [];
      }));
      return settled;
    },
  };
}
