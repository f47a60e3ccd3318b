/**
 * Translation of anything the `openai` client throws into a {@link BackendError} whose kind tells
 * the Temporal retry policy what to do, with upstream messages truncated and the key scrubbed.
 */
import OpenAI from 'openai';
import { BackendError } from '../types.js';
import { ResponseTooLargeError } from '../pinned-fetch.js';
import { AddressRefusedError } from '../../net/address-guard.js';

/** Upstream statuses whose request can never succeed as sent. */
const BAD_REQUEST_STATUSES: ReadonlySet<number> = new Set([400, 401, 403, 404, 409, 413, 422]);

/** Upstream error messages are cut to this length before they travel into workflow history. */
const MAX_UPSTREAM_MESSAGE_CHARS = 500;

/**
 * Normalises anything the client threw. An aborted call rethrows the signal's reason untouched (as
 * `fetch` does), so a cancelled activity surfaces its own cancellation, not a backend failure.
 */
export function toBackendError(error: unknown, signal: AbortSignal, apiKey: string | null): unknown {
  if (signal.aborted) {
    return signal.reason;
  }
  if (error instanceof BackendError) {
    return error;
  }
  // Raised inside the pinned fetch; the client wraps them in an APIConnectionError.
  const tooLarge = findCause(error, ResponseTooLargeError);
  if (tooLarge) {
    return new BackendError('too_large', tooLarge.message);
  }
  const refused = findCause(error, AddressRefusedError);
  if (refused) {
    return new BackendError('bad_request', `upstream refused at connect: ${refused.message}`);
  }
  if (error instanceof OpenAI.APIError && typeof error.status === 'number') {
    return fromHttpError(error.status, error, apiKey);
  }
  if (error instanceof OpenAI.APIConnectionTimeoutError) {
    return new BackendError('unavailable', 'upstream timed out');
  }
  if (error instanceof OpenAI.APIConnectionError) {
    return new BackendError('unavailable', 'upstream connection failed');
  }
  // A malformed 200 body or anything else unexpected from the wire: transient, bounded by retries.
  return new BackendError('unavailable', `upstream call failed: ${redact(describe(error), apiKey)}`);
}

/** Maps an upstream HTTP error status to the retry policy's terms. */
function fromHttpError(
  status: number,
  error: InstanceType<typeof OpenAI.APIError>,
  apiKey: string | null,
): BackendError {
  const message = upstreamMessage(status, error, apiKey);
  const retryAfterMs = parseRetryAfterMs(error.headers);
  if (status === 429) {
    return new BackendError('rate_limited', message, retryAfterMs, status);
  }
  if (status >= 300 && status < 400) {
    // Never followed: a public upstream must not send the worker elsewhere (SSRF).
    return new BackendError('unavailable', `upstream answered a redirect (${status}); redirects are not followed`, null, status);
  }
  if (BAD_REQUEST_STATUSES.has(status)) {
    const kind = isContextLengthError(error) ? 'context_length' : 'bad_request';
    return new BackendError(kind, message, null, status);
  }
  // 5xx, 408 and any status the table does not know: transient.
  return new BackendError('unavailable', message, retryAfterMs, status);
}

/**
 * Recognises "prompt + max_tokens exceed the context": OpenAI's `context_length_exceeded` code,
 * llama.cpp's `exceed_context_size_error` type, and vLLM's message (it sends no code).
 */
function isContextLengthError(error: InstanceType<typeof OpenAI.APIError>): boolean {
  if (error.code === 'context_length_exceeded' || error.type === 'exceed_context_size_error') {
    return true;
  }
  return /maximum context length|exceeds the available context size/i.test(error.message);
}

/**
 * Reads how long the upstream asked us to wait, in milliseconds: `retry-after-ms` first (OpenAI's
 * precise header), then `Retry-After` as delta-seconds or an HTTP date. `null` when absent or
 * unparseable; a date in the past is 0. Not capped here: the workflow's retry policy bounds it.
 */
export function parseRetryAfterMs(headers: Headers | undefined, now: number = Date.now()): number | null {
  const precise = parseNonNegativeNumber(headers?.get('retry-after-ms'));
  if (precise !== null) {
    return Math.ceil(precise);
  }
  const value = headers?.get('retry-after')?.trim();
  if (!value) {
    return null;
  }
  const seconds = parseNonNegativeNumber(value);
  if (seconds !== null) {
    return Math.ceil(seconds * 1000);
  }
  // An HTTP date always names a month; this keeps `Date.parse` from reading "-3" as a year.
  const date = /[a-z]/i.test(value) ? Date.parse(value) : Number.NaN;
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

/** Parses a plain non-negative decimal (`"2"`, `"1.5"`); anything else is `null`. */
function parseNonNegativeNumber(value: string | null | undefined): number | null {
  if (value === null || value === undefined || !/^\s*\d+(\.\d+)?\s*$/.test(value)) {
    return null;
  }
  return Number(value);
}

/**
 * The message a failure carries into workflow history (and, for `bad_request`, to the caller).
 * Credential rejections get a fixed text: upstreams echo key fragments there, and the caller has no
 * business knowing about the deployment's credentials. Everything else is truncated, with the key
 * scrubbed in case an upstream echoes it.
 */
function upstreamMessage(
  status: number,
  error: InstanceType<typeof OpenAI.APIError>,
  apiKey: string | null,
): string {
  if (status === 401 || status === 403) {
    return `upstream rejected the deployment's credentials (${status})`;
  }
  return `upstream ${truncate(redact(error.message, apiKey))}`;
}

/** Replaces every occurrence of the API key in `text`. */
function redact(text: string, apiKey: string | null): string {
  return apiKey ? text.split(apiKey).join('[redacted]') : text;
}

/** Shortens an upstream message: it may be long, and it ends up in workflow history. */
function truncate(message: string): string {
  return message.length <= MAX_UPSTREAM_MESSAGE_CHARS ? message : `${message.slice(0, MAX_UPSTREAM_MESSAGE_CHARS)}…`;
}

/** The first error of class `type` in `error`'s cause chain. */
function findCause<T extends Error>(error: unknown, type: abstract new (...args: never[]) => T): T | null {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth += 1) {
    if (e instanceof type) return e;
  }
  return null;
}

/** A short description of an unknown thrown value. */
function describe(error: unknown): string {
  return truncate(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
}
