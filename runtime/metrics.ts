/** Prometheus metrics (prom-client), one registry per process, created by the entry point. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Metrics = ReturnType<typeof createMetrics>;

export function createMetrics(options: { defaults?: boolean } = {}) {
  const registry = new Registry();
  if (options.defaults ?? true) collectDefaultMetrics({ register: registry });
  const latencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
  return {
    registry,
    httpRequests: new Counter({
      name: 'sluice_http_requests_total',
      help: 'HTTP requests by route, method and status',
      labelNames: ['route', 'method', 'status'] as const,
      registers: [registry],
    }),
    httpLatency: new Histogram({
      name: 'sluice_http_request_duration_seconds',
      help: 'HTTP request latency',
      labelNames: ['route', 'method'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    chatRequests: new Counter({
      name: 'sluice_chat_requests_total',
      help: 'Chat requests by model, outcome status and tenant',
      labelNames: ['model', 'status', 'tenant'] as const,
      registers: [registry],
    }),
    chatLatency: new Histogram({
      name: 'sluice_chat_request_duration_seconds',
      help: 'End-to-end chat request latency seen by the API (sync requests)',
      labelNames: ['model'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    workflowOutcomes: new Counter({
      name: 'sluice_workflow_outcomes_total',
      help: 'Finished request workflows by kind, model and outcome',
      labelNames: ['kind', 'model', 'outcome'] as const,
      registers: [registry],
    }),
    tokens: new Counter({
      name: 'sluice_tokens_total',
      help: 'Tokens processed by model, deployment and direction (prompt|completion)',
      labelNames: ['model', 'deployment', 'direction'] as const,
      registers: [registry],
    }),
    inferenceLatency: new Histogram({
      name: 'sluice_inference_duration_seconds',
      help: 'Inference activity duration by deployment',
      labelNames: ['deployment', 'outcome'] as const,
      buckets: latencyBuckets,
      registers: [registry],
    }),
    inferenceInFlight: new Gauge({
      name: 'sluice_inference_in_flight',
      help: 'Inference activities running on this worker',
      labelNames: ['pool'] as const,
      registers: [registry],
    }),
    billingReconciliationFailures: new Counter({
      name: 'sluice_billing_reconciliation_failures_total',
      help: 'Invoices whose total disagreed with the usage ledger when reconciled',
      labelNames: ['period'] as const,
      registers: [registry],
    }),
    invoicesIssued: new Counter({
      name: 'sluice_invoices_issued_total',
      help: 'Invoices written by billing workflows',
      labelNames: ['period'] as const,
      registers: [registry],
    }),
    breakerState: new Gauge({
      name: 'sluice_circuit_state',
      help: 'Circuit breaker state per deployment (0 closed, 1 half-open, 2 open), as last seen by this process',
      labelNames: ['deployment'] as const,
      registers: [registry],
    }),
    // The response cache (README "Response cache"): hit rate = hit / (hit + miss) by tenant and model.
    cacheLookups: new Counter({
      name: 'sluice_cache_lookups_total',
      help: 'Response cache lookups of eligible requests by tenant, model and result (hit|miss)',
      labelNames: ['tenant', 'model', 'result'] as const,
      registers: [registry],
    }),
    cacheStores: new Counter({
      name: 'sluice_cache_stores_total',
      help: 'Responses offered to the cache by result (stored|too_large|refused: invalidated since the lookup, or over the tenant cap)',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    cacheBytes: new Gauge({
      name: 'sluice_cache_bytes',
      help: 'Bytes of stored responses by level (l1: this process; l2: the shared table, as last counted by this process)',
      labelNames: ['level'] as const,
      registers: [registry],
    }),
    cacheEntries: new Gauge({
      name: 'sluice_cache_entries',
      help: 'Stored responses by level (l1: this process; l2: the shared table, as last counted by this process)',
      labelNames: ['level'] as const,
      registers: [registry],
    }),
  };
}
