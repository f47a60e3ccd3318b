/**
 * Pure contracts shared by workflows, activities, workers and the API: task queues, workflow IDs,
 * search attributes, inputs and outputs, and the failure types the API maps to HTTP statuses.
 * Imports nothing but `@temporalio/common` so it is safe inside the workflow sandbox.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Task queue of the control worker: all workflows and the database activities. */
export const CONTROL_TASK_QUEUE = 'sluice-control';

/** Task queue of the inference workers of one pool. */
export function inferenceTaskQueue(pool: string): string {
  return `sluice-inference-${pool}`;
}

/** Task queue of the same workers for chunks of batch lines (`inferLines`); its prefix is its own. */
export function inferenceBatchTaskQueue(pool: string): string {
  return `sluice-batch-inference-${pool}`;
}

/** Workflow ID of one chat request: a business key, no secrets or PII. */
export function chatWorkflowId(requestId: string): string {
  return `chat-${requestId}`;
}

export const SearchAttributes = {
  kind: defineSearchAttributeKey('SluiceKind', SearchAttributeType.KEYWORD),
  tenant: defineSearchAttributeKey('SluiceTenant', SearchAttributeType.KEYWORD),
  model: defineSearchAttributeKey('SluiceModel', SearchAttributeType.KEYWORD),
  pool: defineSearchAttributeKey('SluicePool', SearchAttributeType.KEYWORD),
  variant: defineSearchAttributeKey('SluiceVariant', SearchAttributeType.KEYWORD),
  status: defineSearchAttributeKey('SluiceStatus', SearchAttributeType.KEYWORD),
  batch: defineSearchAttributeKey('SluiceBatch', SearchAttributeType.KEYWORD),
} as const;

/** Names of the search attributes, for registering them with a Temporal server. */
export const SEARCH_ATTRIBUTE_NAMES = Object.values(SearchAttributes).map((k) => k.name);

export type RequestKind = 'sync' | 'async' | 'batch';
export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface ChatMessageInput {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content: string;
}

/** Sampling parameters as the client asked for them (null = model default). */
export interface ChatParams {
  maxTokens: number | null;
  temperature: number | null;
  topP: number | null;
  seed: number | null;
  stop: string[] | null;
}

/** Input of the `chatRequest` workflow. Built by the API after validation and authentication. */
export interface ChatRequestInput {
  requestId: string;
  tenantId: string;
  keyId: string;
  kind: RequestKind;
  /** Sticky subject for experiment assignment (the `user` field, else the key). */
  subject: string;
  model: string;
  messages: ChatMessageInput[];
  params: ChatParams;
  /** Estimated prompt tokens, for the reservation; the worker counts the real ones. */
  promptTokensEstimate: number;
  /** Unix seconds of acceptance, used as the completion's `created`. */
  created: number;
  batchId: string | null;
}

/** An OpenAI chat completion object, as returned to clients. */
export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  system_fingerprint: string | null;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string; refusal: null };
    logprobs: null;
    finish_reason: 'stop' | 'length';
  }>;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

/** The part of a deployment the inference worker needs to serve it. */
export interface DeploymentTarget {
  id: string;
  model: string;
  pool: string;
  provider: 'llama-cpp' | 'openai-compatible' | 'instant';
  ggufPath: string | null;
  baseUrl: string | null;
  apiKeyRef: string | null;
  upstreamModel: string | null;
  weight: number;
  priority: number;
}

/**
 * Orders a model's deployments for one request: by priority (the fallback order); within a
 * priority, a weighted shuffle by `random` (in a workflow, its seeded Math.random, so replays agree).
 */
export function fallbackOrder(deployments: readonly DeploymentTarget[], random: () => number): DeploymentTarget[] {
  const byPriority = new Map<number, DeploymentTarget[]>();
  for (const d of deployments) byPriority.set(d.priority, [...(byPriority.get(d.priority) ?? []), d]);
  const ordered: DeploymentTarget[] = [];
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    const group = [...(byPriority.get(priority) ?? [])];
    while (group.length > 0) {
      const total = group.reduce((s, d) => s + d.weight, 0);
      let pick = random() * total;
      const index = group.findIndex((d) => (pick -= d.weight) < 0);
      ordered.push(...group.splice(index < 0 ? group.length - 1 : index, 1));
    }
  }
  return ordered;
}

export interface InferInput {
  requestId: string;
  /** The request's tenant: batch lines of different tenants take turns for a backend's slots. */
  tenantId: string;
  deployment: DeploymentTarget;
  messages: ChatMessageInput[];
  params: { maxTokens: number; temperature: number; topP: number | null; seed: number | null; stop: string[] | null };
}

export interface InferOutput {
  content: string;
  finishReason: 'stop' | 'length';
  promptTokens: number;
  completionTokens: number;
  latencyMs: number;
  /** Tokens spent by earlier attempts of this activity that failed after spending them (null: none). */
  failedAttempts: ConsumedTokens | null;
}

/**
 * `ApplicationFailure` types a request can end with, and the HTTP status each maps to.
 * Closed: the API's error middleware has one entry per type.
 */
export const FailureTypes = {
  Unauthorized: 401,
  PermissionDenied: 403,
  NotFound: 404,
  BadRequest: 400,
  ContextLengthExceeded: 400,
  QuotaExceeded: 429,
  NoDeploymentAvailable: 503,
  Cancelled: 409,
  InternalError: 500,
} as const;
export type FailureType = keyof typeof FailureTypes;

/** Details attached to a failure (first element of `ApplicationFailure.details`). */
export interface FailureDetails {
  /** OpenAI error `code`, e.g. `rate_limit_exceeded`, `model_not_found`. */
  code: string | null;
  param: string | null;
  retryAfterSeconds: number | null;
  /** Infer failures: tokens the failed or cancelled attempt spent, when known. */
  consumed?: ConsumedTokens | null;
}

/** Tokens a generation used before it failed or was cancelled: what the deployment really spent. */
export interface ConsumedTokens {
  promptTokens: number;
  completionTokens: number;
}

/**
 * One item's result in an activity that runs a step for many requests at once (a batch's chunk of
 * lines): its value, or the step's own non-retryable failure (a decision such as a refused quota),
 * which the workflow rethrows to that item's request alone. Any other error fails the whole
 * activity, which Temporal retries: every step is idempotent per request.
 */
export type ItemResult<T> = { ok: true; value: T } | { ok: false; failure: ItemFailure };

export interface ItemFailure {
  type: string;
  message: string;
  details: unknown[];
}

/** Workflow ID of one batch. */
export function batchWorkflowId(batchId: string): string {
  return `batch-${batchId}`;
}

/**
 * Request ID of one line of a batch, deterministic from the batch and the line number: every step
 * of the line is idempotent on it, so a resumed or replayed batch can never run a line twice.
 */
export function batchRequestId(batchId: string, lineNo: number): string {
  return `${batchId.replace(/^batch_/, 'batch_req_')}_${lineNo}`;
}

/**
 * The workflow a request runs in while it holds a reservation: its own `chat-<id>` for a sync or
 * async request, its batch's for a batch line (lines run inside the batch workflow; batches started
 * before ran them as `chat-<id>` children, which never outlive their batch).
 */
export function requestWorkflowId(requestId: string): string {
  const line = /^batch_req_(.+)_\d+$/.exec(requestId);
  return line ? batchWorkflowId(`batch_${line[1]}`) : chatWorkflowId(requestId);
}

/** Temporal priority keys (1 = first): sync requests ahead of async ones, batch lines last. */
export const PriorityKeys = { sync: 1, async: 2, batch: 3 } as const;

/** Input of the `batch` workflow (a later run of it carries its progress in `state`). */
export interface BatchWorkflowInput {
  batchId: string;
  tenantId: string;
  /** Lines in flight at once. */
  concurrency: number;
  /** Lines started per run before continuing as new (history stays bounded). */
  linesPerRun: number;
  /** Unix ms after which unfinished lines expire (created + completion window). */
  expiresAtMs: number;
  state: BatchProgress | null;
}

export interface BatchProgress {
  /** Last line number started; the next run continues after it. */
  afterLine: number;
  total: number;
  completed: number;
  failed: number;
  cancelRequested: boolean;
}

/** One line ready to run, as the batch activities hand it to the workflow. */
export interface BatchLine {
  lineNo: number;
  input: ChatRequestInput;
}

// ---------------------------------------------------------------------------------------------
// Billing (issue 5)
// ---------------------------------------------------------------------------------------------

/** Workflow ID of one tenant's billing period: a re-run or a second trigger finds the same workflow. */
export function billingWorkflowId(tenantId: string, period: string): string {
  return `billing-${tenantId}-${period}`;
}

/** Workflow ID of a run over every billable tenant of a period. */
export function billingRunWorkflowId(period: string): string {
  return `billing-run-${period}`;
}

/** ID of the Temporal Schedule that bills the previous month on the 1st at 00:10 UTC. */
export const BILLING_SCHEDULE_ID = 'sluice-billing-monthly';

/** `YYYY-MM`, a calendar month in UTC. */
export const PERIOD_PATTERN = /^\d{4}-(0[1-9]|1[0-2])$/;

/** The calendar month (UTC) before the one holding `at`. */
export function previousPeriod(at: Date): string {
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() - 1, 1)).toISOString().slice(0, 7);
}

/** ID of the Temporal Schedule that closes the previous UTC day at 00:05 UTC. */
export const DAY_CLOSE_SCHEDULE_ID = 'sluice-day-close-daily';

/** `YYYY-MM-DD`, a calendar day in UTC. */
export const DAY_PATTERN = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;

/** The UTC day before the one holding `at`. */
export function previousDay(at: Date): string {
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate() - 1)).toISOString().slice(0, 10);
}

/** Workflow ID of a day close (every tenant, or one). */
export function dayCloseWorkflowId(day: string, tenantId: string | null = null): string {
  return tenantId === null ? `day-close-${day}` : `day-close-${day}-${tenantId}`;
}

export interface DayCloseInput {
  /** Null: the day before the workflow's start (what the schedule passes). */
  day: string | null;
  /** Null: every tenant with usage that day. */
  tenantId: string | null;
}

export interface DayCloseOutput {
  day: string;
  /** Closes written by this run (0 on a re-run). */
  created: number;
  /** Tenants whose day is closed, in all. */
  tenants: number;
}

export interface BillingInput {
  tenantId: string;
  period: string;
}

export interface BillingOutput {
  invoiceId: string;
  version: number;
  /** False when the invoice already existed (a re-run): nothing was written. */
  created: boolean;
  totalMicros: number;
  lateRows: number;
}

export interface BillingRunInput {
  /** Null: the month before the run's start (what the schedule passes). */
  period: string | null;
  /** Null: every billable tenant. */
  tenantIds: string[] | null;
}

export interface BillingRunOutput {
  period: string;
  invoices: Array<{ tenantId: string; invoiceId: string; created: boolean; totalMicros: number }>;
  failures: Array<{ tenantId: string; message: string }>;
}

/** Event types a webhook endpoint can subscribe to (docs/webhooks.md). */
export const WEBHOOK_EVENT_TYPES = ['batch.completed', 'batch.failed', 'batch.cancelled', 'job.succeeded', 'job.failed', 'budget.threshold'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** Workflow ID of one delivery: one event to one endpoint. Business keys only, never the secret. */
export function webhookWorkflowId(eventId: string, endpointId: string): string {
  return `webhook-${eventId}-${endpointId}`;
}

/** How a delivery is retried: exponential backoff (with jitter, see `deliverWebhook`) up to a horizon. */
export interface WebhookRetryPolicy {
  /** First retry delay. */
  initialIntervalMs: number;
  /** Longest delay between attempts. */
  maxIntervalMs: number;
  /** Attempts in all, the first included. */
  maxAttempts: number;
  /** Time from the first attempt after which the delivery gives up (and the endpoint is disabled). */
  horizonMs: number;
  /** Time one POST may take. */
  timeoutMs: number;
}

/** Input of the `webhookDelivery` workflow: IDs only (the secret and body are read by the activity). */
export interface WebhookDeliveryInput {
  deliveryId: string;
  retry: WebhookRetryPolicy;
}
