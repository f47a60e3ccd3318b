/** The reserve and release steps: admission against the tenant's limits, atomic in PostgreSQL. */
import { maxPriceForModel } from '../db/repositories/models.js';
import { release, reserve } from '../db/repositories/quota.js';
import { costMicros } from '../domain/cost.js';
import { requestFailure } from './failures.js';
import type { Db } from '../db/database.js';
import { emitBudgetEvents, type EventPublisher } from './events.js';

export interface ReserveQuotaInput {
  requestId: string;
  tenantId: string;
  model: string;
  promptTokensEstimate: number;
  maxTokens: number;
}

const LIMIT_CODES = {
  requests_per_minute: 'rate_limit_exceeded',
  tokens_per_minute: 'tokens_rate_limit_exceeded',
  max_concurrent: 'concurrency_limit_exceeded',
  monthly_budget: 'insufficient_quota',
} as const;

/** The repository calls the quota steps make; a batch's chunk passes shared and batched ones (`chunk-steps.ts`). */
export interface QuotaRepo {
  maxPriceForModel: typeof maxPriceForModel;
  reserve: typeof reserve;
}

export function createQuotaActivities(deps: { db: Db; now: () => Date; events: EventPublisher; repo?: QuotaRepo }) {
  const repo = deps.repo ?? { maxPriceForModel, reserve };
  return {
    /** Holds the request's worst-case tokens and cost (prompt estimate + max_tokens at the model's highest price). */
    async reserveQuota(input: ReserveQuotaInput): Promise<{ estCostMicros: number }> {
      const at = deps.now();
      const price = await repo.maxPriceForModel(deps.db, input.model, at);
      const estCost = costMicros(price, input.promptTokensEstimate, input.maxTokens);
      const result = await repo.reserve(deps.db, {
        requestId: input.requestId,
        tenantId: input.tenantId,
        estTokens: input.promptTokensEstimate + input.maxTokens,
        estCostMicros: estCost,
        at,
      });
      if (result.ok) {
        // Budget thresholds this reservation crossed: audit row and `budget.threshold` webhook.
        if (result.budgetEvents) await emitBudgetEvents(deps, input.requestId);
        return { estCostMicros: result.estCostMicros };
      }
      if (result.limit === 'tenant_missing') throw requestFailure('PermissionDenied', 'tenant does not exist', { code: 'tenant_suspended' });
      throw requestFailure('QuotaExceeded', `Limit reached: ${result.limit.replaceAll('_', ' ')}`, {
        code: LIMIT_CODES[result.limit],
        retryAfterSeconds: result.retryAfterSeconds,
      });
    },

    /** Compensation: gives back what a failed or cancelled request held. Idempotent. */
    async releaseQuota(input: { requestId: string }): Promise<void> {
      await release(deps.db, input.requestId);
    },
  };
}
