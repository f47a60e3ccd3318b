/**
 * Prometheus metrics (prom-client), one registry per process, created by the entry point.
 *
 * Label bounds (what keeps the series count finite): `tenant` appears only on the request,
 * usage and budget series (`sluice_requests_total`, `sluice_usage_*`, `sluice_tenant_budget_*`,
 * and the older `sluice_chat_requests_total`): one series set per tenant that sent traffic or has
 * a budget. `model`, `deployment` and `pool` are bounded by the models table; `kind`, `outcome`,
 * `result`, `check`, `queue` and `state` are closed sets; `batch` is bounded by
 * {@link OPS_GAUGE_LIMITS}. The alert rules and dashboard in `deploy/` read these names
 * (test/api/prometheus.test.ts fails on a name that is not exported).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Metrics = ReturnType<typeof createMetrics>;

/** Bounds of the gauges the control worker refreshes from the database (workers/ops-metrics.ts). */
export const OPS_GAUGE_LIMITS = Object.freeze({
  /** Tenants with a monthly budget given a `sluice_tenant_budget_used_ratio` series (the most used first). @default 500 */
  budgetTenants: 500,
  /** Batches given `sluice_batch_lines` series: running ones, then those finished in the last hour. @default 100 */
  batches: 100,
  /** Objectives given `sluice_slo_*` series (by ID): the burn-rate alerts cover the first this many. @default 200 */
  slos: 200,
});

/**
 * Latency-SLO buckets of `sluice_request_duration_seconds`: the SLO thresholds of
 * deploy/prometheus/rules.yml (10 s for interactive requests) must be bucket bounds.
 */
export const REQUEST_LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 900, 3600];
/** Time-to-first-token buckets of `sluice_stream_ttft_seconds`. */
export const TTFT_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60];
/** Schedule-to-start buckets of `sluice_inference_schedule_to_start_seconds` (the backlog alert's 30 s is one). */
export const SCHEDULE_TO_START_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** How a request ended, for availability SLIs: the failure's HTTP status class decides. */
export type RequestOutcomeClass = 'succeeded' | 'client_error' | 'server_error' | 'cancelled';

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
    ...createSloMetrics(registry),
    ...createOpsMetrics(registry),
  };
}

/** Request outcomes, latencies, TTFT, tokens and cost: what the SLOs and the traffic panels read. */
function createSloMetrics(registry: Registry) {
  return {
    requests: new Counter({
      name: 'sluice_requests_total',
      help: 'Finished requests (every kind and endpoint) by kind, model, pool, tenant and outcome (succeeded, client_error = 4xx, server_error = 5xx, cancelled); pool "none" when no deployment served it',
      labelNames: ['kind', 'model', 'pool', 'tenant', 'outcome'] as const,
      registers: [registry],
    }),
    requestLatency: new Histogram({
      name: 'sluice_request_duration_seconds',
      help: 'Request duration from its creation to its recorded outcome, succeeded requests, by kind, model and pool',
      labelNames: ['kind', 'model', 'pool'] as const,
      buckets: REQUEST_LATENCY_BUCKETS,
      registers: [registry],
    }),
    ttft: new Histogram({
      name: 'sluice_stream_ttft_seconds',
      help: 'Streamed chat requests: time from the request to its first content chunk written to the client, by model',
      labelNames: ['model'] as const,
      buckets: TTFT_BUCKETS,
      registers: [registry],
    }),
    usageTokens: new Counter({
      name: 'sluice_usage_tokens_total',
      help: 'Billable tokens settled in the usage ledger by model, tenant and direction (prompt|completion)',
      labelNames: ['model', 'tenant', 'direction'] as const,
      registers: [registry],
    }),
    usageCost: new Counter({
      name: 'sluice_usage_cost_micros_total',
      help: 'Cost settled in the usage ledger, integer micro-USD, by model and tenant',
      labelNames: ['model', 'tenant'] as const,
      registers: [registry],
    }),
    scheduleToStart: new Histogram({
      name: 'sluice_inference_schedule_to_start_seconds',
      help: 'Inference activities: time from (re)scheduling to a worker starting them, by pool and queue (interactive|batch); grows with the queue backlog',
      labelNames: ['pool', 'queue'] as const,
      buckets: SCHEDULE_TO_START_BUCKETS,
      registers: [registry],
    }),
  };
}

/** Webhooks, reconciliation, audit, budgets and batches: the operational alerts and panels. */
function createOpsMetrics(registry: Registry) {
  const webhookAttempts = new Counter({
    name: 'sluice_webhook_delivery_attempts_total',
    help: 'Webhook delivery attempts by result (succeeded|failed)',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  const webhooksAbandoned = new Counter({
    name: 'sluice_webhook_deliveries_abandoned_total',
    help: 'Webhook deliveries given up (retries exhausted, endpoint gone or refused): the endpoint is disabled',
    registers: [registry],
  });
  const reconciliationMismatches = new Counter({
    name: 'sluice_reconciliation_mismatches_total',
    help: 'Reconciliations that found a mismatch, by check (billing_day: a closed day against the ledger; billing_invoice: an invoice against the ledger)',
    labelNames: ['check'] as const,
    registers: [registry],
  });
  const auditVerifications = new Counter({
    name: 'sluice_audit_verifications_total',
    help: 'Periodic audit chain verifications by result (ok|broken|error)',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  // Incident counters exist at zero from the start, so rate() and increase() see a healthy 0.
  for (const result of ['succeeded', 'failed'] as const) webhookAttempts.inc({ result }, 0);
  for (const check of ['billing_day', 'billing_invoice'] as const) reconciliationMismatches.inc({ check }, 0);
  for (const result of ['ok', 'broken', 'error'] as const) auditVerifications.inc({ result }, 0);
  const opsRefreshes = new Counter({
    name: 'sluice_ops_metrics_refreshes_total',
    help: 'Refreshes of the database-backed gauges by the control worker, by result (ok|error)',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  for (const result of ['ok', 'error'] as const) opsRefreshes.inc({ result }, 0);
  return {
    webhookAttempts,
    webhooksAbandoned,
    reconciliationMismatches,
    auditVerifications,
    // Labelled (mode = incremental) so that no series exists before a verify ran: an unlabelled
    // gauge would read 0 (broken) on every process until then.
    auditChainValid: new Gauge({
      name: 'sluice_audit_chain_valid',
      help: 'Result of the control worker\'s last periodic audit chain verification (mode incremental): 1 the chain verified, 0 it is broken',
      labelNames: ['mode'] as const,
      registers: [registry],
    }),
    auditChainUnprotectedRows: new Gauge({
      name: 'sluice_audit_unprotected_rows',
      help: 'Audit rows after the latest checkpoint (not covered by any checkpoint) at the last periodic verification',
      labelNames: ['mode'] as const,
      registers: [registry],
    }),
    budgetUsed: new Gauge({
      name: 'sluice_tenant_budget_used_ratio',
      help: 'Tenants with a monthly budget: this month\'s spend (settled plus reserved) over the budget (1 = spent)',
      labelNames: ['tenant'] as const,
      registers: [registry],
    }),
    budgetMicros: new Gauge({
      name: 'sluice_tenant_budget_micros',
      help: 'Tenants with a monthly budget: the budget and this month\'s spend, integer micro-USD, by kind (budget|spent|reserved)',
      labelNames: ['tenant', 'kind'] as const,
      registers: [registry],
    }),
    batchLines: new Gauge({
      name: 'sluice_batch_lines',
      help: 'Batches running or finished within the last hour: lines by state (total|completed|failed), per batch and its status',
      labelNames: ['batch', 'status', 'state'] as const,
      registers: [registry],
    }),
    batchesByStatus: new Gauge({
      name: 'sluice_batches',
      help: 'Batches not yet finished, by status (validating|in_progress|finalizing|cancelling)',
      labelNames: ['status'] as const,
      registers: [registry],
    }),
    opsRefreshes,
    sloObjective: new Gauge({
      name: 'sluice_slo_objective',
      help: 'Objectives defined through /v1/admin/slos or SLUICE_SLOS_FILE: the target (0.999 = 99.9%), by objective ID, kind and scope (scope_type model|pool|plan, scope its value)',
      labelNames: ['slo', 'kind', 'scope_type', 'scope'] as const,
      registers: [registry],
    }),
    sloErrorRatio: new Gauge({
      name: 'sluice_slo_error_ratio',
      help: 'Objectives: share of the eligible events of the last window (5m|30m|1h|2h|6h|1d|3d) that missed the objective, measured from the request and batch tables; no series for a window without events',
      labelNames: ['slo', 'window'] as const,
      registers: [registry],
    }),
    sloEvents: new Gauge({
      name: 'sluice_slo_events',
      help: 'Objectives: events of the last window by class (eligible|bad), measured from the request and batch tables',
      labelNames: ['slo', 'window', 'class'] as const,
      registers: [registry],
    }),
  };
}
