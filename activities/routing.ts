/** Routing: a model's deployments in fallback order, and the shared circuit breaker per deployment. */
import type { Db } from '../db/database.js';
import { activeDeployments } from '../db/repositories/models.js';
import { acquireCircuit, recordCircuit } from '../db/repositories/circuit.js';
import type { DeploymentTarget } from '../contracts/chat.js';
import type { BreakerConfig, BreakerState } from '../domain/circuit-breaker.js';
import type { Metrics } from '../runtime/metrics.js';

/** The lookup the route step makes; one request's admission passes its prefetched one (`admit-steps.ts`). */
export interface RoutingRepo {
  activeDeployments: typeof activeDeployments;
}

export function createRoutingActivities(deps: { db: Db; now: () => Date; breaker: BreakerConfig; metrics: Metrics | null; repo?: RoutingRepo }) {
  const repo = deps.repo ?? { activeDeployments };
  return {
    /** Active deployments of the model, by priority (the fallback order), then ID. */
    async planRoute(input: { model: string }): Promise<DeploymentTarget[]> {
      const rows = await repo.activeDeployments(deps.db, input.model);
      return rows.map((d) => ({
        id: d.id,
        model: d.model_id,
        pool: d.pool,
        provider: d.provider,
        ggufPath: d.gguf_path,
        baseUrl: d.base_url,
        apiKeyRef: d.api_key_ref,
        upstreamModel: d.upstream_model,
        weight: d.weight,
        priority: d.priority,
      }));
    },

    /** May this request use the deployment? False while its circuit is open (or a probe is out). */
    async acquireCircuit(input: { deploymentId: string }): Promise<boolean> {
      return (await acquireCircuit(deps.db, input.deploymentId, deps.now(), deps.breaker)).allowed;
    },

    /**
     * Records a request's result on the deployment's circuit: a failure from the pipeline, a
     * success from `complete`. Sets `sluice_circuit_state` to the state it leaves.
     */
    async recordCircuit(input: { deploymentId: string; ok: boolean }): Promise<void> {
      const state = await recordCircuit(deps.db, input.deploymentId, input.ok, deps.now(), deps.breaker);
      deps.metrics?.breakerState.set({ deployment: input.deploymentId }, state.state === 'closed' ? 0 : state.state === 'half_open' ? 1 : 2);
    },
  };
}

/**
 * `acquireCircuit` over a circuit read beforehand (`read`: a request's prefetched facts, a chunk's
 * shared read): a circuit read as closed admits at once, as `acquireCircuit`'s own read would;
 * any other (or none recorded) goes through `acquire`, so half-open probes stay one at a time.
 */
export function acquireOverRead(
  read: (deploymentId: string) => BreakerState | null | undefined | Promise<BreakerState | null | undefined>,
  acquire: (input: { deploymentId: string }) => Promise<boolean>,
): (input: { deploymentId: string }) => Promise<boolean> {
  return async (input) => ((await read(input.deploymentId))?.state === 'closed' ? true : acquire(input));
}
