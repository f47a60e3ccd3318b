/** What the webhook activities are built over (publish and deliver alike), and their default configuration. */
import type { Client } from '@temporalio/client';
import type { Db } from '../db/database.js';
import type { Logger } from '../runtime/logger.js';
import type { Metrics } from '../runtime/metrics.js';
import type { WebhookConfig, WebhookRetryPolicy } from '../contracts/webhooks.js';

/** 5 s doubling to 1 h, at most 20 attempts within 24 h; 10 s per POST. */
export const DEFAULT_WEBHOOK_RETRY: WebhookRetryPolicy = Object.freeze({
  initialIntervalMs: 5_000, maxIntervalMs: 3_600_000, maxAttempts: 20, horizonMs: 86_400_000, timeoutMs: 10_000,
});

/** No private host allowed; the default retry policy. */
export const DEFAULT_WEBHOOK_CONFIG: WebhookConfig = Object.freeze({ allowPrivateHosts: [], retry: DEFAULT_WEBHOOK_RETRY });

/** What publishing and delivering webhooks need (injected by `activities/index.ts`). */
export interface WebhookDeps {
  /** The pool the webhook repositories run on. */
  db: Db;
  /** The clock of event timestamps and signatures. */
  now: () => Date;
  /** Starts delivery workflows; null: deliveries are recorded `pending` and not sent. @default null */
  temporal?: Client | null;
  /** @default DEFAULT_WEBHOOK_CONFIG */
  webhooks?: WebhookConfig;
  /** Where raw failure details go (never to a tenant). @default null (not logged) */
  log?: Logger | null;
  /** Counts delivery attempts and abandoned deliveries. @default null (not counted) */
  metrics?: Metrics | null;
}
