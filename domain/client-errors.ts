/**
 * The one normaliser from a request's failure (its `ApplicationFailure` type, OpenAI error code and
 * message) to what a client may read: HTTP errors, `GET /v1/jobs/{id}`, batch error-file lines and
 * `job.failed` webhook payloads all go through {@link clientError} or {@link clientFailureMessage},
 * which read the closed table `FAILURES` (`contracts/failures.ts`).
 *
 * A failure's own message is for operators (Temporal history, logs): it can carry an upstream's
 * text, internal host names and resolved addresses, PostgreSQL or llama.cpp exception text, the
 * names of unset environment variables. Only failures Sluice decides itself with a message written
 * for the caller (authorization, quota, validation: `authored` in the table) keep theirs; every
 * other failure gets a fixed text. Pure: importable by workflows, activities and the API.
 */
import { FAILURES, type ErrorType, type FailureAnswer, type FailureType } from '../contracts/failures.js';

/** Fixed client messages by OpenAI error code (the code says where the failure came from). */
const MESSAGE_BY_CODE: Readonly<Record<string, string>> = {
  upstream_bad_request: 'The model deployment rejected the request.',
  completion_too_large: 'The completion is larger than Sluice can return; ask for fewer max_tokens. Nothing was billed.',
  context_length_exceeded: FAILURES.ContextLengthExceeded.message,
  model_unavailable: FAILURES.NoDeploymentAvailable.message,
  stream_interrupted: FAILURES.StreamInterrupted.message,
  internal_error: FAILURES.InternalError.message,
};

/** The answer for a failure `type` (a stored or thrown one, so any string): a type outside the table is an internal error. */
function failureAnswer(type: string | null): FailureAnswer {
  return type !== null && Object.hasOwn(FAILURES, type) ? FAILURES[type as FailureType] : FAILURES.InternalError;
}

/** Authored messages are cut to this length. */
const MAX_MESSAGE_CHARS = 500;

/**
 * The message a client may read for a failure of `type` with `code`. `message` (the failure's own)
 * is returned only for the authored decision types, and never when the code names an upstream or
 * internal cause; any type outside the closed table (`FAILURES`) is an internal error.
 */
export function clientFailureMessage(type: string | null, code: string | null, message: string | null): string {
  const byCode = code === null || !Object.hasOwn(MESSAGE_BY_CODE, code) ? undefined : MESSAGE_BY_CODE[code];
  if (byCode !== undefined) return byCode;
  const answer = failureAnswer(type);
  if (answer.authored && message) return message.length <= MAX_MESSAGE_CHARS ? message : `${message.slice(0, MAX_MESSAGE_CHARS)}…`;
  return answer.message;
}

/** A failure as a client reads it, in OpenAI's error terms. */
export interface ClientError {
  /** HTTP status (a batch error line's `status_code`). */
  status: number;
  /** OpenAI error `type`. */
  type: ErrorType;
  /** Safe message ({@link clientFailureMessage}). */
  message: string;
  /** OpenAI error `code`, as the failure carried it. */
  code: string | null;
}

/** The answer to a failure of `type` with `code` and its own `message`, from the closed table. */
export function clientError(type: string | null, code: string | null, message: string | null): ClientError {
  const answer = failureAnswer(type);
  return { status: answer.status, type: answer.errorType, message: clientFailureMessage(type, code, message), code };
}

/** A request's stored error (`requests.error`, `job.failed` data), with its message made safe. */
export function clientFailure<T extends { type: string; message: string; code: string | null }>(error: T): T {
  return { ...error, message: clientFailureMessage(error.type, error.code, error.message) };
}
