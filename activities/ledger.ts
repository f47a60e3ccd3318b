/** The settle step: one usage row per request and step, cost from the price in force, reservation settled. */
import { priceFor, type PriceQuote } from '../db/repositories/billing.js';
import { recordUnbilledUsage, settle, type UsageInput } from '../db/repositories/quota.js';
import { usageCostMicros } from './billing.js';
import type { Metrics } from '../runtime/metrics.js';
import type { Db } from '../db/database.js';
import type { UsageEntry } from '../contracts/chat.js';
import { emitBudgetEvents, type EventPublisher } from './events.js';
import { markUsageCached, modelCachePrice } from '../db/repositories/cache.js';
import { costMicros } from '../domain/cost.js';

/** Input of the `settle` and `recordConsumed` steps: the workflow's usage entry. */
export type SettleInput = UsageEntry;

/** The ledger row of an attempt's usage, priced with `quote` (the price in force `at`; none: 0). */
function usageAt(input: SettleInput, quote: PriceQuote | null, at: Date): UsageInput {
  return {
    ...input, priceId: quote?.priceId ?? null, tenantPriceId: quote?.tenantPriceId ?? null, at,
    costMicros: quote ? usageCostMicros(quote, input.kind, input.promptTokens, input.completionTokens) : 0,
  };
}

/** The cost of a cache hit: the stored response's tokens at the model's cache price. */
function cachedCost(microsPerMtok: number, input: SettleInput): number {
  return costMicros({ inputMicrosPerMtok: microsPerMtok, outputMicrosPerMtok: microsPerMtok }, input.promptTokens, input.completionTokens);
}

/** The repository calls the settle step makes; a batch's chunk passes shared and batched ones (`chunk-steps.ts`). */
export interface LedgerRepo {
  priceFor: typeof priceFor;
  settle: typeof settle;
}

/**
 * What follows a settlement, in this process: the budget thresholds it crossed emitted (a retry
 * re-emits idempotently), and the token and cost counters of a usage row it wrote (a retry wrote none).
 */
export async function afterSettle(
  deps: { db: Db; now: () => Date; events: EventPublisher; metrics: Metrics | null }, input: SettleInput, result: { costMicros: number; inserted: boolean; budgetEvents: boolean },
): Promise<void> {
  if (result.budgetEvents) await emitBudgetEvents(deps, input.requestId);
  if (result.inserted && deps.metrics && input.cached !== true) {
    deps.metrics.tokens.inc({ model: input.model, deployment: input.deploymentId, direction: 'prompt' }, input.promptTokens);
    deps.metrics.tokens.inc({ model: input.model, deployment: input.deploymentId, direction: 'completion' }, input.completionTokens);
    deps.metrics.usageTokens.inc({ model: input.model, tenant: input.tenantId, direction: 'prompt' }, input.promptTokens);
    deps.metrics.usageTokens.inc({ model: input.model, tenant: input.tenantId, direction: 'completion' }, input.completionTokens);
    deps.metrics.usageCost.inc({ model: input.model, tenant: input.tenantId }, result.costMicros);
  }
}

export function createLedgerActivities(deps: { db: Db; now: () => Date; events: EventPublisher; metrics: Metrics | null; repo?: LedgerRepo }) {
  const repo = deps.repo ?? { priceFor, settle };
  return {
    /**
     * Exactly once per (request, step): a retry, a replay or a second worker finds the row and
     * returns its cost. (The deployment's circuit success is recorded by `complete`, next to it.)
     */
    async settle(input: SettleInput): Promise<{ costMicros: number }> {
      const at = deps.now();
      // The price in force at this instant (the tenant's negotiated rate if any); the row is dated
      // at the same instant, so a price change mid-period splits the cost exactly at its start.
      // A response-cache hit is priced at its model's cache price per million tokens of the stored
      // response (default 0), no list or negotiated price: no deployment ran (docs/billing.md).
      const usage = input.cached === true
        ? { ...input, priceId: null, tenantPriceId: null, at, costMicros: cachedCost(await modelCachePrice(deps.db, input.model), input) }
        : usageAt(input, await repo.priceFor(deps.db, input.tenantId, input.deploymentId, at), at);
      const result = await repo.settle(deps.db, usage);
      // Marked apart from the insert (sluice_settle's arguments are shared); a retry marks it again.
      if (input.cached === true) await markUsageCached(deps.db, input.requestId, input.step);
      await afterSettle(deps, input, result);
      return { costMicros: result.costMicros };
    },

    /**
     * Usage a failed or cancelled attempt really consumed (`step` names the attempt, e.g.
     * `infer:failed:<deployment>`): recorded with `billable = false` at the price in force, exactly once.
     */
    async recordConsumed(input: SettleInput): Promise<void> {
      const at = deps.now();
      const quote = await priceFor(deps.db, input.tenantId, input.deploymentId, at);
      await recordUnbilledUsage(deps.db, usageAt(input, quote, at));
    },
  };
}
