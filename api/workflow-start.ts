/**
 * What a failed `client.workflow.start` means for the caller of a route that starts one (chat,
 * batches). Every failure is logged with the request's ID; the client gets a stable code only.
 */
import { WorkflowExecutionAlreadyStartedError, isGrpcServiceError } from '@temporalio/client';
import type { Logger } from '../runtime/logger.js';
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
