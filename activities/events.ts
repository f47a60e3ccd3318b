/**
 * Events the activities publish (`job.*`, `budget.threshold`, `batch.*`), through a publisher the
 * composition root injects: webhooks in production (`createWebhookPublisher`), a recording one in
 * tests. The activities that emit an event import only this contract, not the delivery machinery.
 */
import type { Db } from '../db/database.js';
import { appendAudit } from '../db/repositories/audit.js';
import { budgetEventsOfRequest } from '../db/repositories/quota.js';
import type { WebhookEventType } from '../contracts/webhooks.js';

/** Something that happened to a tenant. `key` names the occurrence: publishing the same key twice is one event. */
export interface DomainEvent {
  key: string;
  tenantId: string;
  type: WebhookEventType;
  data: Record<string, unknown>;
}

/** Where events go. Idempotent per `event.key`; a failure is thrown (the emitting activity is retried). */
export interface EventPublisher {
  publish(event: DomainEvent): Promise<void>;
}

/**
 * Emits the audit row and `budget.threshold` event of each threshold a request's reservation or
 * settlement crossed. Idempotent (audit idempotency key, event key), so a retried step re-emits safely.
 */
export async function emitBudgetEvents(deps: { db: Db; now: () => Date; events: EventPublisher }, requestId: string): Promise<void> {
  for (const e of await budgetEventsOfRequest(deps.db, requestId)) {
    const key = `budget.threshold:${e.tenant_id}:${e.period}:${e.threshold_pct}`;
    const data = {
      tenant_id: e.tenant_id, period: e.period, threshold_pct: e.threshold_pct,
      monthly_budget_micros: e.budget_micros, committed_micros: e.committed_micros,
    };
    await appendAudit(deps.db, {
      actor: 'system', tenantId: e.tenant_id, action: 'budget.threshold', target: `tenant:${e.tenant_id}`, data, idempotencyKey: key, at: deps.now(),
    });
    await deps.events.publish({ key, tenantId: e.tenant_id, type: 'budget.threshold', data });
  }
}
