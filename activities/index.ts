/** The control worker's activities: everything that touches PostgreSQL. Built over injected deps. */
import type { Db } from '../db/database.js';
import type { Client } from '@temporalio/client';
import type { Metrics } from '../runtime/metrics.js';
import type { Logger } from '../runtime/logger.js';
import { createAuthActivities } from './auth.js';
import { createQuotaActivities } from './quota.js';
import { createExperimentActivities } from './experiments.js';
import { createRoutingActivities } from './routing.js';
import { createLedgerActivities } from './ledger.js';
import { createAuditActivities } from './audit.js';
import { createBillingActivities } from './billing.js';
import { createBatchActivities } from './batch.js';
import { createReconcileActivities } from './reconcile.js';
import { createRetentionActivities } from './retention.js';
import { createAdmissionActivities } from './admission.js';
import { createChunkSteps } from './chunk-steps.js';
import { createAdmitSteps } from './admit-steps.js';
import { createCompleteStep } from './complete-step.js';
import { createResponseActivities } from './responses.js';
import { createCacheActivities } from './cache.js';
import { DEFAULT_RESPONSE_CACHE_CONFIG, type ResponseCacheConfig } from '../runtime/config.js';
import { createSloActivities } from './slo.js';
import { createCompletionPromptActivities } from './completion-prompts.js';
import { DEFAULT_BREAKER_CONFIG, type BreakerConfig } from '../domain/circuit-breaker.js';
import { DEFAULT_WEBHOOK_CONFIG, createWebhookActivities, createWebhookPublisher, type WebhookConfig } from './webhooks.js';
import type { EventPublisher } from './events.js';

export interface ControlDeps {
  db: Db;
  /** Clock, injectable for tests. @default () => new Date() */
  now?: () => Date;
  /** @default DEFAULT_BREAKER_CONFIG */
  breaker?: BreakerConfig;
  metrics?: Metrics | null;
  /** Client for the reconciler's look at request workflows. @default null */
  temporal?: Client | null;
  /** Key that signs audit checkpoints. @default null (unsigned) */
  auditKey?: string | null;
  /** Webhook delivery settings. @default DEFAULT_WEBHOOK_CONFIG */
  webhooks?: WebhookConfig;
  /** Where raw failure details go (clients get safe messages). @default null (not logged) */
  log?: Logger | null;
  /**
   * Where the quota, ledger and audit steps publish their events (`budget.threshold`, `job.*`).
   * @default webhook deliveries over `db` and `temporal` (`createWebhookPublisher`)
   */
  events?: EventPublisher;
  /** Bounds of the response cache (its L1 lives in these activities' closure). @default DEFAULT_RESPONSE_CACHE_CONFIG */
  responseCache?: ResponseCacheConfig;
}

/** Builds every control activity over `deps`; the composition root of the control worker. */
export function createControlActivities(deps: ControlDeps) {
  const base = {
    db: deps.db,
    now: deps.now ?? (() => new Date()),
    breaker: deps.breaker ?? DEFAULT_BREAKER_CONFIG,
    metrics: deps.metrics ?? null,
    temporal: deps.temporal ?? null,
    auditKey: deps.auditKey ?? null,
    webhooks: deps.webhooks ?? DEFAULT_WEBHOOK_CONFIG,
    log: deps.log ?? null,
  };
  const full = { ...base, events: deps.events ?? createWebhookPublisher(base) };
  const steps = {
    ...createAuthActivities(full),
    ...createQuotaActivities(full),
    ...createExperimentActivities(full),
    ...createRoutingActivities(full),
    ...createLedgerActivities(full),
    ...createAuditActivities(full),
  };
  return {
    ...steps,
    ...createAdmissionActivities(steps, Math.random, () => createChunkSteps(full, steps), createAdmitSteps(full, steps), createCompleteStep(full, steps)),
    ...createCompletionPromptActivities(full, steps),
    ...createCacheActivities({ ...full, config: deps.responseCache ?? DEFAULT_RESPONSE_CACHE_CONFIG }),
    ...createBillingActivities(full),
    ...createBatchActivities(full),
    ...createReconcileActivities(full),
    ...createRetentionActivities(full),
    ...createResponseActivities(full),
    ...createWebhookActivities(full),
    ...createSloActivities(full),
  };
}

export type ControlActivities = ReturnType<typeof createControlActivities>;
