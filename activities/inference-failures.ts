/**
 * What the workflow sees of a failed or cancelled generation: backend errors mapped to the
 * failures the workflow's retries need, with the tokens spent carried in the details.
 */
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { ConsumedTokens } from '../contracts/chat.js';
import type { FailureDetails } from '../contracts/failures.js';
import { BackendError, InterruptedGeneration } from './backends/types.js';
import { requestFailure } from './failures.js';

/**
 * What the workflow sees of a failed or cancelled generation. Tokens it spent travel in the
 * failure's details (`consumed`), so the workflow records them as unbilled usage: on a failure in
 * the ApplicationFailure's details, on a cancellation in the CancelledFailure's.
 */
export function consumedBy(err: unknown): ConsumedTokens | null {
  return err instanceof InterruptedGeneration ? err.consumed : err instanceof BackendError ? err.consumed : null;
}

export function toFailure(err: unknown, cancelled: boolean, consumed: ConsumedTokens | null): unknown {
  const cause = err instanceof InterruptedGeneration ? err.cause : err;
  if (cancelled) return consumed ? new CancelledFailure('generation cancelled', [{ consumed }]) : cause;
  // Already decided (the boundary check's BadRequest): passed on as it is.
  if (cause instanceof ApplicationFailure) return cause;
  if (!(cause instanceof BackendError)) {
    if (!consumed) return cause;
    const message = cause instanceof Error ? cause.message : String(cause);
    return ApplicationFailure.create({ type: 'UpstreamUnavailable', message, nonRetryable: false, details: [detailsWith(consumed)] });
  }
  switch (cause.kind) {
    case 'bad_request':
      return requestFailure('BadRequest', cause.message, { code: 'upstream_bad_request', consumed });
    case 'too_large':
      return requestFailure('BadRequest', cause.message, { code: 'completion_too_large', consumed });
    case 'context_length':
      return requestFailure('ContextLengthExceeded', cause.message, { code: 'context_length_exceeded', param: 'messages', consumed });
    case 'rate_limited':
    case 'unavailable':
      return ApplicationFailure.create({
        type: cause.kind === 'rate_limited' ? 'UpstreamRateLimited' : 'UpstreamUnavailable',
        message: cause.message,
        nonRetryable: false,
        details: [detailsWith(consumed)],
        ...(cause.retryAfterMs !== null ? { nextRetryDelay: cause.retryAfterMs } : {}),
      });
  }
}

export function addConsumed(a: ConsumedTokens | null, b: ConsumedTokens | null): ConsumedTokens | null {
  if (!a || !b) return a ?? b;
  return { promptTokens: a.promptTokens + b.promptTokens, completionTokens: a.completionTokens + b.completionTokens };
}

export function detailsWith(consumed: ConsumedTokens | null): FailureDetails {
  return { code: null, param: null, retryAfterSeconds: null, consumed };
}
