/**
 * The one normaliser from a request's failure (its `ApplicationFailure` type, OpenAI error code and
 * message) to the message a client may read: HTTP errors, `GET /v1/jobs/{id}`, batch error-file
 * lines and `job.failed` webhook payloads all go through {@link clientFailureMessage}.
 *
 * A failure's own message is for operators (Temporal history, logs): it can carry an upstream's
 * text, internal host names and resolved addresses, PostgreSQL or llama.cpp exception text, the
 * names of unset environment variables. Only failures Sluice decides itself with a message written
 * for the caller (authorization, quota, validation) keep theirs; every other failure gets a fixed
 * text from the table below. Pure: importable by workflows, activities and the API.
 */
import { FailureTypes } from '../contracts/failures.js';

/** Fixed client messages by OpenAI error code (the code says where the failure came from). */
const MESSAGE_BY_CODE: Readonly<Record<string, string>> = {
  upstream_bad_request: 'The model deployment rejected the request.',
  completion_too_large: 'The completion is larger than Sluice can return; ask for fewer max_tokens. Nothing was billed.',
  context_length_exceeded: "The messages and max_tokens exceed the model's context length.",
  model_unavailable: 'No deployment of this model could serve the request; try again later.',
  stream_interrupted: 'The deployment failed after the stream started; the stream ends here. Only the tokens sent are recorded, unbilled.',
  internal_error: 'The server had an error while processing your request.',
};

/** Fixed client messages by failure type, for failures whose code is not in the table above. */
const MESSAGE_BY_TYPE: Readonly<Record<string, string>> = {
  NoDeploymentAvailable: MESSAGE_BY_CODE.model_unavailable as string,
  ContextLengthExceeded: MESSAGE_BY_CODE.context_length_exceeded as string,
  Cancelled: 'The request was cancelled.',
  InternalError: MESSAGE_BY_CODE.internal_error as string,
};

/** Failure types whose messages Sluice writes for the caller at a decision (they name no internals). */
const AUTHORED: ReadonlySet<string> = new Set(['Unauthorized', 'PermissionDenied', 'NotFound', 'BadRequest', 'QuotaExceeded']);

/** Authored messages are cut to this length. */
const MAX_MESSAGE_CHARS = 500;

/**
 * The message a client may read for a failure of `type` with `code`. `message` (the failure's own)
 * is returned only for the authored decision types, and never when the code names an upstream or
 * internal cause; any type outside the closed table (`FailureTypes`) is an internal error.
 */
export function clientFailureMessage(type: string | null, code: string | null, message: string | null): string {
  const byCode = code === null ? undefined : MESSAGE_BY_CODE[code];
  if (byCode !== undefined) return byCode;
  const t = type ?? 'InternalError';
  if (!(t in FailureTypes)) return MESSAGE_BY_CODE.internal_error as string;
  const byType = MESSAGE_BY_TYPE[t];
  if (byType !== undefined) return byType;
  if (AUTHORED.has(t) && message) return message.length <= MAX_MESSAGE_CHARS ? message : `${message.slice(0, MAX_MESSAGE_CHARS)}…`;
  return MESSAGE_BY_CODE.internal_error as string;
}

/** A request's stored error (`requests.error`, `job.failed` data), with its message made safe. */
export function clientFailure<T extends { type: string; message: string; code: string | null }>(error: T): T {
  return { ...error, message: clientFailureMessage(error.type, error.code, error.message) };
}
