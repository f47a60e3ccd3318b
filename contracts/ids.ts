/** Task queues, workflow IDs, search attributes and priorities: the names every process agrees on. Pure. */
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

/** Workflow ID of one embeddings request (its request ID starts `embreq_`, see {@link requestWorkflowId}). */
export function embeddingsWorkflowId(requestId: string): string {
  return `embed-${requestId}`;
}

/** Prefix of the request IDs of `/v1/embeddings` requests: their workflow is `embed-<id>`. */
export const EMBEDDINGS_REQUEST_PREFIX = 'embreq';

/** Workflow ID of one legacy text completion (`/v1/completions`; its request ID starts `cmpl_`). */
export function completionWorkflowId(requestId: string): string {
  return `completion-${requestId}`;
}

/** Workflow ID of one `/v1/responses` request (its request ID, the response's `id`, starts `resp_`). */
export function responseWorkflowId(requestId: string): string {
  return `response-${requestId}`;
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

/** The endpoint a request was made on, from its ID's prefix (a batch line runs inside its batch). */
export type RequestEndpoint = 'chat' | 'completions' | 'embeddings' | 'responses' | 'batch_line';

/** {@link RequestEndpoint} of a request ID: the one place the prefixes are read (with {@link requestWorkflowId}). */
export function requestEndpointOf(requestId: string): RequestEndpoint {
  if (/^batch_req_(.+)_\d+$/.test(requestId)) return 'batch_line';
  if (requestId.startsWith(`${EMBEDDINGS_REQUEST_PREFIX}_`)) return 'embeddings';
  if (requestId.startsWith('resp_')) return 'responses';
  return requestId.startsWith('cmpl_') ? 'completions' : 'chat';
}

/**
 * The workflow a request runs in while it holds a reservation: its own `chat-<id>` for a sync or
 * async request (`completion-<id>` for a legacy completion, request ID `cmpl_…`), its batch's for a
 * batch line (lines run inside the batch workflow; batches started before ran them as `chat-<id>`
 * children, which never outlive their batch); `embed-<id>` for an embeddings request (its ID starts
 * `embreq_`), `response-<id>` for a `/v1/responses` request (`resp_…`), so the reconciler finds the workflow holding it.
 */
export function requestWorkflowId(requestId: string): string {
  switch (requestEndpointOf(requestId)) {
    case 'batch_line': return batchWorkflowId(`batch_${(/^batch_req_(.+)_\d+$/.exec(requestId) ?? [])[1] ?? ''}`);
    case 'embeddings': return embeddingsWorkflowId(requestId);
    case 'responses': return responseWorkflowId(requestId);
    case 'completions': return completionWorkflowId(requestId);
    case 'chat': return chatWorkflowId(requestId);
  }
}

/** Temporal priority keys (1 = first): sync requests ahead of async ones, batch lines last. */
export const PriorityKeys = { sync: 1, async: 2, batch: 3 } as const;

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

/** ID of the Temporal Schedule that closes the previous UTC day at 00:05 UTC. */
export const DAY_CLOSE_SCHEDULE_ID = 'sluice-day-close-daily';

/** Workflow ID of a day close (every tenant, or one). */
export function dayCloseWorkflowId(day: string, tenantId: string | null = null): string {
  return tenantId === null ? `day-close-${day}` : `day-close-${day}-${tenantId}`;
}

/** Workflow ID of one delivery: one event to one endpoint. Business keys only, never the secret. */
export function webhookWorkflowId(eventId: string, endpointId: string): string {
  return `webhook-${eventId}-${endpointId}`;
}
