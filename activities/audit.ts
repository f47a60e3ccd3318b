/** The audit step, and the request's recorded outcome. */
import { appendAudit, appendAuditMany, type AuditEntry } from '../db/repositories/audit.js';
import { finishRequests, type RequestOutcome } from '../db/repositories/requests.js';
import type { Metrics, RequestOutcomeClass } from '../runtime/metrics.js';
import { clientError, clientFailure } from '../domain/client-errors.js';
import type { Db } from '../db/database.js';
import type { EventPublisher } from './events.js';
import type { Logger } from '../runtime/logger.js';
import type { RequestKind } from '../contracts/chat.js';

export interface OutcomeInput {
  requestId: string;
  tenantId: string;
  keyId: string;
  kind: RequestKind;
  model: string;
  status: 'succeeded' | 'failed' | 'cancelled';
  /** The completion, for `succeeded`. */
  result: unknown;
  /** `{ type, message, code }` for `failed` / `cancelled`; never prompt text. */
  error: { type: string; message: string; code: string | null } | null;
  /** What the audit row records: model, deployment, variant, tokens, cost. No prompt or output text. */
  summary: Record<string, unknown>;
}

/** The outcome's audit row (no prompt or output text). */
export function outcomeEntry(input: OutcomeInput, at: Date): AuditEntry {
  return {
    actor: `key:${input.keyId}`,
    tenantId: input.tenantId,
    action: `request.${input.status}`,
    target: `request:${input.requestId}`,
    data: { kind: input.kind, model: input.model, ...input.summary, ...(input.error ? { error_type: input.error.type, error_code: input.error.code } : {}) },
    idempotencyKey: `request:${input.requestId}:outcome`,
    at,
  };
}

/** How a request ended, for availability: its failure's HTTP status class (from the failure table) decides. */
export function outcomeClass(input: Pick<OutcomeInput, 'status' | 'error'>): RequestOutcomeClass {
  if (input.status === 'succeeded') return 'succeeded';
  if (input.status === 'cancelled') return 'cancelled';
  return clientError(input.error?.type ?? null, input.error?.code ?? null, null).status >= 500 ? 'server_error' : 'client_error';
}

/**
 * `sluice_requests_total` and `sluice_request_duration_seconds` for the requests this call finished
 * (a retried activity finished none of them: nothing is counted twice).
 */
function recordRequestMetrics(metrics: Metrics, inputs: readonly OutcomeInput[], finished: ReadonlyArray<{ id: string; seconds: number }>): void {
  const byId = new Map(inputs.map((input) => [input.requestId, input]));
  for (const { id, seconds } of finished) {
    const input = byId.get(id);
    if (!input) continue;
    const pool = typeof input.summary['pool'] === 'string' ? input.summary['pool'] : 'none';
    const outcome = outcomeClass(input);
    metrics.requests.inc({ kind: input.kind, model: input.model, pool, tenant: input.tenantId, outcome });
    if (outcome === 'succeeded') metrics.requestLatency.observe({ kind: input.kind, model: input.model, pool }, seconds);
  }
}

/** What is stored on a request is what its client reads (job body, batch error line, `job.failed`): a safe message; the failure's own goes to the log only. */
export function safeOutcome(deps: { log: Logger | null }, input: OutcomeInput): OutcomeInput {
  if (!input.error) return input;
  const error = clientFailure(input.error);
  if (error.message !== input.error.message) {
    deps.log?.warn('request failed', { request_id: input.requestId, type: input.error.type, code: input.error.code, detail: input.error.message.slice(0, 1000) });
  }
  return { ...input, error };
}

/** The request row's outcome of a (safe) outcome input. */
export function requestOutcomeOf(input: OutcomeInput): RequestOutcome {
  return {
    id: input.requestId, status: input.status, result: input.result, error: input.error,
    failureType: input.error?.type ?? null, pool: typeof input.summary.pool === 'string' ? input.summary.pool : null,
  };
}

/**
 * What follows recorded outcomes, in this process: the request counters of the requests this call
 * finished, and for async jobs their `job.succeeded` / `job.failed` events (idempotent by key).
 */
export async function afterOutcomes(
  deps: { events: EventPublisher; metrics: Metrics | null }, inputs: readonly OutcomeInput[], finished: ReadonlyArray<{ id: string; seconds: number }>,
): Promise<void> {
  if (deps.metrics) recordRequestMetrics(deps.metrics, inputs, finished);
  for (const input of inputs) {
    // Async jobs only (a cancel was asked for by the caller: no event).
    if (input.kind === 'async' && input.status !== 'cancelled') {
      const type = input.status === 'succeeded' ? 'job.succeeded' : 'job.failed';
      await deps.events.publish({
        key: `${type}:${input.requestId}`, tenantId: input.tenantId, type,
        data: { id: input.requestId, object: 'chat.completion.job', status: input.status, model: input.model, error: input.error },
      });
    }
    deps.metrics?.workflowOutcomes.inc({ kind: input.kind, model: input.model, outcome: input.status });
  }
}

export function createAuditActivities(deps: { db: Db; now: () => Date; events: EventPublisher; metrics: Metrics | null; log: Logger | null }) {
  /**
   * Audits each outcome, records it on its request, and publishes `job.*` events: the audit rows
   * under one lock of the chain's head, the requests in one statement. Idempotent per request.
   */
  async function recordOutcomes(raw: readonly OutcomeInput[]): Promise<void> {
    if (raw.length === 0) return;
    const inputs = raw.map((input) => safeOutcome(deps, input));
    const at = deps.now();
    if (inputs.length === 1) await appendAudit(deps.db, outcomeEntry(inputs[0] as OutcomeInput, at));
    else await appendAuditMany(deps.db, inputs.map((input) => outcomeEntry(input, at)));
    await afterOutcomes(deps, inputs, await finishRequests(deps.db, inputs.map(requestOutcomeOf)));
  }
  return {
    async recordOutcome(input: OutcomeInput): Promise<void> {
      await recordOutcomes([input]);
    },
    recordOutcomes,
  };
}
