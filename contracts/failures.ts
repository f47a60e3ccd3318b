/** The closed set of failure types a workflow ends with, and the details they carry. Pure. */
import type { ConsumedTokens } from './chat.js';

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
  /** A streamed request's attempt failed after its first chunk was sent: the stream ends, never restarts. */
  StreamInterrupted: 503,
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
