/** The audit step, and the request's recorded outcome. */
import { appendAudit } from '../db/repositories/audit.js';
import { finishRequest } from '../db/repositories/requests.js';
import type { Metrics } from '../workers/metrics.js';
import { publishEvent, type WebhookDeps } from './webhooks.js';

export interface OutcomeInput {
  requestId: string;
  tenantId: string;
  keyId: string;
  kind: 'sync' | 'async' | 'batch';
  model: string;
  status: 'succeeded' | 'failed' | 'cancelled';
  /** The completion, for `succeeded`. */
  result: unknown;
  /** `{ type, message, code }` for `failed` / `cancelled`; never prompt text. */
  error: { type: string; message: string; code: string | null } | null;
  /** What the audit row records: model, deployment, variant, tokens, cost. No prompt or output text. */
  summary: Record<string, unknown>;
}

export function createAuditActivities(deps: WebhookDeps & { metrics: Metrics | null }) {
  return {
    /** Appends the request's audit row and records its outcome on the request. Idempotent by request. */
    async recordOutcome(input: OutcomeInput): Promise<void> {
      await appendAudit(deps.db, {
        actor: `key:${input.keyId}`,
        tenantId: input.tenantId,
        action: `request.${input.status}`,
        target: `request:${input.requestId}`,
        data: { kind: input.kind, model: input.model, ...input.summary, ...(input.error ? { error_type: input.error.type, error_code: input.error.code } : {}) },
        idempotencyKey: `request:${input.requestId}:outcome`,
        at: deps.now(),
      });
      await finishRequest(deps.db, input.requestId, { status: input.status, result: input.result, error: input.error });
      // Async jobs only: `job.succeeded` / `job.failed` (a cancel was asked for by the caller: no event).
      if (input.kind === 'async' && input.status !== 'cancelled') {
        const type = input.status === 'succeeded' ? 'job.succeeded' : 'job.failed';
        await publishEvent(deps, {
          key: `${type}:${input.requestId}`, tenantId: input.tenantId, type,
          data: { id: input.requestId, object: 'chat.completion.job', status: input.status, model: input.model, error: input.error },
        });
      }
      deps.metrics?.workflowOutcomes.inc({ kind: input.kind, model: input.model, outcome: input.status });
    },
  };
}
