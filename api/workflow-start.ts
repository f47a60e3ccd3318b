/**
 * What a failed `client.workflow.start` means for the caller of a route that starts one (chat,
 * batches). Every failure is logged with the request's ID; the client gets a stable code only.
 */
import { trace } from '@opentelemetry/api';
import { WorkflowExecutionAlreadyStartedError, isGrpcServiceError, type Client, type Workflow } from '@temporalio/client';
import type { Db } from '../db/database.js';
import { deleteUnstartedRequest } from '../db/repositories/requests.js';
import { recordStartFailure } from '../db/repositories/start-failures.js';
import { CONTROL_TASK_QUEUE, SearchAttributes } from '../contracts/ids.js';
import type { RequestKind } from '../contracts/chat.js';
import type { Logger } from '../runtime/logger.js';
import type { Metrics } from '../runtime/metrics.js';
import { HttpError } from './errors.js';

/** gRPC status codes that mean "Temporal cannot take it now, try again": UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED. */
const UNAVAILABLE_CODES: ReadonlySet<number> = new Set([14, 4, 8]);

/** The gRPC status code of `err` or of an error in its `cause` chain, or null. */
function grpcCodeOf(err: unknown): number | null {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth += 1) {
    if (isGrpcServiceError(e)) return e.code;
  }
  return null;
}

/** How a start failed: the workflow already exists, Temporal is unreachable or overloaded, or anything else. */
export function startFailureKind(err: unknown): 'already_started' | 'unavailable' | 'internal' {
  if (err instanceof WorkflowExecutionAlreadyStartedError) return 'already_started';
  const code = grpcCodeOf(err);
  return code !== null && UNAVAILABLE_CODES.has(code) ? 'unavailable' : 'internal';
}

/**
 * Logs a failed start with `ids` (the request or batch ID) and returns the error to answer with:
 * null when the workflow already exists (the caller carries on as if it had started it: the same
 * ID is the same work), 503 `temporal_unavailable` with `Retry-After: 1` when Temporal cannot be
 * reached or is overloaded, else 500 `internal_error`.
 */
export function startFailureResponse(err: unknown, log: Logger, ids: Record<string, string>, what: 'request' | 'batch'): HttpError | null {
  const kind = startFailureKind(err);
  const fields = {
    ...ids,
    kind,
    error: err instanceof Error ? err.name : typeof err,
    grpc_code: grpcCodeOf(err),
    detail: err instanceof Error ? String(err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message).slice(0, 300) : null,
  };
  if (kind === 'already_started') {
    log.warn(`${what} workflow already started`, fields);
    return null;
  }
  log.error(`could not start the ${what} workflow`, fields);
  if (kind === 'unavailable') return new HttpError('service_unavailable', `Could not queue the ${what}; try again`, 'temporal_unavailable', null, 1);
  return new HttpError('server_error', 'The server had an error while processing your request.', 'internal_error');
}

/** What a route that starts a request's workflow needs for it. */
export interface RequestStartDeps {
  db: Db;
  temporal: Client;
  /** Ask Temporal for eager workflow start. */
  eagerStart: boolean;
  /** Where a failed start is logged (with the request ID). */
  log: Logger;
  /** A failed start counts in `sluice_requests_total` as a server error (outcome `server_error`, pool `none`). @default null */
  metrics?: Metrics | null;
}

/** One request's workflow to start (chat, completion, embeddings). */
export interface RequestWorkflowStart<W extends Workflow> {
  /** Workflow type, e.g. `chatRequest`. */
  type: string;
  workflowId: string;
  requestId: string;
  args: Parameters<W>;
  /** `SluiceKind` search attribute (sync, async, embeddings…). */
  kind: string;
  /**
   * The request row's kind (`requests.kind`: sync, async, batch), where a failed start is
   * recorded and counted (`sluice_requests_total{kind}`), when it is not `kind` (embeddings: sync).
   * @default kind
   */
  requestKind?: RequestKind;
  tenantId: string;
  model: string;
  /** Temporal priority key (`PriorityKeys`). */
  priorityKey: number;
  /**
   * `SluiceStatus` at start: `running` for a sync request, streamed or not (its caller waits for
   * it; the workflow then writes its pool and variant with its end, in one upsert:
   * `workflows/request-workflow.ts`), else `queued` (an async job: its attempt upserts `running`).
   * @default 'queued'
   */
  status?: 'queued' | 'running';
  /**
   * The caller wrote the request's row just now, so a failed start deletes it. False: a retry of
   * the same `Idempotency-Key` found the row still queued (the process that wrote it may have died
   * before starting the workflow) and starts it; a failure then leaves the row. @default true
   */
  ownsRow?: boolean;
}

/**
 * Starts a request's workflow on the control queue (the same ID is the same work: an existing
 * workflow is used), with its search attributes, eager start and priority. A start that failed
 * for any reason but "already started" deletes the request's unstarted row and throws the error
 * of `startFailureResponse`.
 */
export async function startRequestWorkflow<W extends Workflow>(deps: RequestStartDeps, start: RequestWorkflowStart<W>): Promise<void> {
  // The request's server span (tracing on) gets its identifiers; the start itself is traced by the client's interceptor.
  trace.getActiveSpan()?.setAttributes({ 'sluice.request_id': start.requestId, 'sluice.tenant_id': start.tenantId, 'sluice.model': start.model, 'sluice.kind': start.kind });
  try {
    await deps.temporal.workflow.start<Workflow>(start.type, {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId: start.workflowId,
      args: start.args as unknown[],
      workflowIdConflictPolicy: 'USE_EXISTING',
      requestEagerStart: deps.eagerStart,
      priority: { priorityKey: start.priorityKey },
      typedSearchAttributes: [
        { key: SearchAttributes.kind, value: start.kind },
        { key: SearchAttributes.tenant, value: start.tenantId },
        { key: SearchAttributes.model, value: start.model },
        { key: SearchAttributes.status, value: start.status ?? 'queued' },
      ],
    });
  } catch (err) {
    // Already started: the workflow of this request ID exists, so the request is queued.
    const error = startFailureResponse(err, deps.log, { request_id: start.requestId }, 'request');
    if (error) {
      if (start.ownsRow !== false) await deleteUnstartedRequest(deps.db, start.requestId);
      await recordFailedStart(deps, start, error);
      throw error;
    }
  }
}

/**
 * Counts a failed start as a failed request: a row of `request_start_failures` (the SLI's ground
 * truth; the request row is gone or still queued, so it is never counted twice) and the request
 * counter. The database may be what failed: then the row is lost, logged, and the client still gets
 * the start's error.
 */
async function recordFailedStart<W extends Workflow>(deps: RequestStartDeps, start: RequestWorkflowStart<W>, error: HttpError): Promise<void> {
  const kind = start.requestKind ?? start.kind;
  deps.metrics?.requests.inc({ kind, model: start.model, pool: 'none', tenant: start.tenantId, outcome: 'server_error' });
  try {
    await recordStartFailure(deps.db, {
      requestId: start.requestId, tenantId: start.tenantId, kind, model: start.model, code: error.code ?? error.type, status: error.status,
    });
  } catch (err) {
    deps.log.error('could not record a failed workflow start for the SLI', { request_id: start.requestId, error: err instanceof Error ? err.message : String(err) });
  }
}
