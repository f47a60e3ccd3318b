/** The closed set of failure types a workflow ends with, how each is answered, and the details they carry. Pure. */
import type { ConsumedTokens } from './chat.js';

/**
 * OpenAI error `type`s Sluice answers with, and the HTTP status of each. Closed: `HttpError`
 * (`api/errors.ts`) takes its status from here, and so does every failure type below.
 */
export const ERROR_STATUS = {
  invalid_request_error: 400,
  authentication_error: 401,
  permission_error: 403,
  not_found_error: 404,
  conflict_error: 409,
  idempotency_error: 422,
  request_timeout: 408,
  request_too_large: 413,
  rate_limit_error: 429,
  server_error: 500,
  service_unavailable: 503,
} as const;
export type ErrorType = keyof typeof ERROR_STATUS;

/** How a client is told of one failure type. */
export interface FailureAnswer<E extends ErrorType = ErrorType> {
  /** The OpenAI error `type` of the answer. */
  errorType: E;
  /** Its HTTP status (and a batch error line's `status_code`): the error type's. */
  status: (typeof ERROR_STATUS)[E];
  /**
   * True for failures Sluice decides itself with a message written for the caller (authorization,
   * quota, validation): the failure's own message is shown. Any other failure's message is for
   * operators only and the client reads {@link FailureAnswer.message}.
   */
  authored: boolean;
  /** The safe message a client reads when the failure's own may not be (or is empty) shown. */
  message: string;
}

function answer<E extends ErrorType>(errorType: E, message: string, authored: boolean): FailureAnswer<E> {
  return { errorType, status: ERROR_STATUS[errorType], authored, message };
}

/**
 * The one table of `ApplicationFailure` types a request can end with: each one's OpenAI error
 * type, HTTP status and default safe message. The API's error middleware, batch error files and
 * job bodies (`GET /v1/jobs/{id}`, `job.failed` webhooks) all read it (`domain/client-errors.ts`);
 * a type outside it is answered as `InternalError`.
 */
export const FAILURES = {
  Unauthorized: answer('authentication_error', 'The API key is missing, invalid, expired or revoked.', true),
  PermissionDenied: answer('permission_error', 'This key may not do this.', true),
  NotFound: answer('not_found_error', 'The requested object does not exist.', true),
  BadRequest: answer('invalid_request_error', 'The request is invalid.', true),
  ContextLengthExceeded: answer('invalid_request_error', "The messages and max_tokens exceed the model's context length.", false),
  QuotaExceeded: answer('rate_limit_error', 'A rate limit or budget of this tenant was reached.', true),
  NoDeploymentAvailable: answer('service_unavailable', 'No deployment of this model could serve the request; try again later.', false),
  /** A streamed request's attempt failed after its first chunk was sent: the stream ends, never restarts. */
  StreamInterrupted: answer('service_unavailable', 'The deployment failed after the stream started; the stream ends here. Only the tokens sent are recorded, unbilled.', false),
  Cancelled: answer('conflict_error', 'The request was cancelled.', false),
  InternalError: answer('server_error', 'The server had an error while processing your request.', false),
} as const satisfies Record<string, FailureAnswer>;

export type FailureType = keyof typeof FAILURES;

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
