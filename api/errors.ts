/**
 * One error type for the HTTP API (its status from the closed `ERROR_STATUS` of
 * `contracts/failures.ts`), and one middleware that answers everything in OpenAI's error shape:
 * `{"error": {"message", "type", "param", "code"}}`. Workflow failures are answered from the one
 * failure table through `clientError` (`domain/client-errors.ts`), as batch error lines are.
 */
import { randomUUID } from 'node:crypto';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { ERROR_STATUS, type ErrorType, type FailureDetails } from '../contracts/failures.js';
import { clientError, type ClientError } from '../domain/client-errors.js';
import type { Logger } from '../runtime/logger.js';
import { InvalidRequestError } from '../domain/invalid-request.js';

export { ERROR_STATUS, type ErrorType };

export class HttpError extends Error {
  override readonly name = 'HttpError';
  readonly status: number;
  /** Raw cause for the log (never sent): e.g. a workflow failure's own message. */
  detail: string | null = null;
  constructor(
    readonly type: ErrorType,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message);
    this.status = ERROR_STATUS[type];
  }

  toJSON() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new HttpError('invalid_request_error', message, code, param);

/** Refuses query parameters the route does not read (nothing is silently ignored). */
export function onlyQuery(req: { query: object }, allowed: readonly string[]): void {
  for (const k of Object.keys(req.query)) if (!allowed.includes(k)) throw badRequest(`Unknown query parameter '${k.slice(0, 64)}'`, k.slice(0, 64), 'unknown_parameter');
}

/** The 400 for a value a pure rule refused (`domain/`), naming the field. */
export function fromInvalidRequest(err: InvalidRequestError): HttpError {
  return badRequest(err.message, err.param, err.code);
}

export const notFound = (what: string) => new HttpError('not_found_error', `${what} not found`, 'not_found');

/** The error type of an HTTP status (the reverse of `ERROR_STATUS`), for Express's own errors. */
const TYPE_FOR_STATUS: ReadonlyMap<number, ErrorType> = new Map(
  Object.entries(ERROR_STATUS).map(([type, status]) => [status, type as ErrorType]),
);

function fromClientError(e: ClientError, param: string | null = null, retryAfterSeconds: number | null = null): HttpError {
  return new HttpError(e.type, e.message, e.code, param, retryAfterSeconds);
}

/** Maps a workflow's failure (an `ApplicationFailure` of a closed type) to the HTTP error. */
export function fromWorkflowFailure(err: unknown): HttpError | null {
  if (!(err instanceof WorkflowFailedError)) return null;
  if (err.cause instanceof CancelledFailure) return fromClientError(clientError('Cancelled', 'request_cancelled', null));
  const cause = err.cause;
  if (!(cause instanceof ApplicationFailure)) return fromClientError(clientError('InternalError', 'internal_error', null));
  const type = cause.type ?? 'InternalError';
  const details = (cause.details?.[0] ?? null) as FailureDetails | null;
  const answer = clientError(type, details?.code ?? null, cause.message);
  const error = fromClientError(
    { ...answer, code: answer.code ?? (answer.status === 500 ? 'internal_error' : null) }, details?.param ?? null, details?.retryAfterSeconds ?? null,
  );
  error.detail = `${type}: ${cause.message}`.slice(0, 1000);
  return error;
}

/** The header that carries each answer's request ID (also in every error log line). */
export const REQUEST_ID_HEADER = 'x-request-id';

/**
 * Gives every request an ID: the caller's `X-Request-Id` when it is a plain token (1–128 of
 * `[A-Za-z0-9._:-]`), else a new one; sent back on every answer, errors included, and logged with
 * any error so a client's report finds the raw details.
 */
export function requestId(): RequestHandler {
  return (req, res, next) => {
    const given = req.get(REQUEST_ID_HEADER);
    const id = given !== undefined && /^[A-Za-z0-9._:-]{1,128}$/.test(given) ? given : `reqid_${randomUUID().replace(/-/g, '')}`;
    res.locals.requestId = id;
    res.setHeader(REQUEST_ID_HEADER, id);
    next();
  };
}

/** Normalises anything thrown into the OpenAI error shape. Unknown errors are logged and answered 500 without detail. */
export function errorMiddleware(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    // Already answered (a request timeout fired first): nothing more can be sent.
    if (res.headersSent) return;
    let error: HttpError;
    const rid = typeof res.locals?.requestId === 'string' ? (res.locals.requestId as string) : null;
    if (err instanceof HttpError) error = err;
    else if (err instanceof InvalidRequestError) error = fromInvalidRequest(err);
    else if (fromWorkflowFailure(err)) error = fromWorkflowFailure(err) as HttpError;
    else if (err?.type === 'entity.too.large') error = new HttpError('request_too_large', 'Request body too large', 'request_too_large');
    else if (err?.type === 'entity.parse.failed') error = badRequest('We could not parse the JSON body of your request.', null, 'invalid_json');
    else if (typeof err?.status === 'number' && err.status >= 400 && err.status < 500 && err.expose) {
      error = new HttpError(TYPE_FOR_STATUS.get(err.status) ?? 'invalid_request_error', String(err.message));
    } else {
      log.error('unhandled error', { request_id: rid, route: req.route?.path ?? null, method: req.method, error: err instanceof Error ? err.name : typeof err, detail: err instanceof Error ? err.message.slice(0, 300) : null });
      error = new HttpError('server_error', 'The server had an error while processing your request.', 'internal_error');
    }
    if (error.detail !== null) {
      log.warn('request failed', { request_id: rid, route: req.route?.path ?? null, method: req.method, status: error.status, code: error.code, detail: error.detail });
    }
    if (error.retryAfterSeconds !== null) res.setHeader('Retry-After', String(error.retryAfterSeconds));
    if (error.status === 401) res.setHeader('WWW-Authenticate', 'Bearer');
    res.status(error.status).json(error.toJSON());
  };
}
