/** The settle step: one usage row per request and step, cost from the price in force, reservation settled. */
import type { Db } from '../db/database.js';
import { pricesAt } from '../db/repositories/models.js';
import { settle } from '../db/repositories/quota.js';
import { recordCircuit } from '../db/repositories/circuit.js';
import type { BreakerConfig } from './circuit-breaker.js';
import { costMicros } from './cost.js';
import type { Metrics } from '../workers/metrics.js';

export interface SettleInput {
  requestId: string;
  step: string;
  tenantId: string;
  keyId: string;
  kind: 'sync' | 'async' | 'batch';
  model: string;
  deploymentId: string;
  pool: string;
  variant: string | null;
  promptTokens: number;
  completionTokens: number;
  latencyMs: number;
}

export function createLedgerActivities(deps: { db: Db; now: () => Date; breaker: BreakerConfig; metrics: Metrics | null }) {
  return {
    /**
     * Exactly once per (request, step): a retry, a replay or a second worker finds the row and
     * returns its cost. Also closes the deployment's circuit record with a success.
     */
    async settle(input: SettleInput): Promise<{ costMicros: number }> {
      const at = deps.now();
      const price = (await pricesAt(deps.db, [input.deploymentId], at)).get(input.deploymentId) ?? null;
      const cost = price
        ? costMicros({ inputMicrosPerMtok: price.input_micros_per_mtok, outputMicrosPerMtok: price.output_micros_per_mtok }, input.promptTokens, input.completionTokens)
        : 0;
      const result = await settle(deps.db, {
        requestId: input.requestId,
        step: input.step,
        tenantId: input.tenantId,
        keyId: input.keyId,
        kind: input.kind,
        model: input.model,
        deploymentId: input.deploymentId,
        pool: input.pool,
        variant: input.variant,
        priceId: price?.id ?? null,
        inputTokens: input.promptTokens,
        outputTokens: input.completionTokens,
        costMicros: cost,
        latencyMs: input.latencyMs,
      });
      const state = await recordCircuit(deps.db, input.deploymentId, true, at, deps.breaker);
      if (result.inserted && deps.metrics) {
        deps.metrics.tokens.inc({ model: input.model, deployment: input.deploymentId, direction: 'prompt' }, input.promptTokens);
        deps.metrics.tokens.inc({ model: input.model, deployment: input.deploymentId, direction: 'completion' }, input.completionTokens);
        deps.metrics.breakerState.set({ deployment: input.deploymentId }, state.state === 'closed' ? 0 : state.state === 'half_open' ? 1 : 2);
      }
      return { costMicros: result.costMicros };
    },
  };
}
