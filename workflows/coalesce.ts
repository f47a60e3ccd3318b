/**
 * Coalesces one step of many requests into one activity call: a batch's lines each call the step
 * as if it were their own activity (the same `runChatPipeline` code as a sync request), and the
 * calls made in the same turn of the workflow (lines started together, inference results that
 * arrived in the same workflow task) leave as one activity over all of them. What Temporal and
 * the SDK cost per activity (history events, a task, a round trip) is then shared by the chunk.
 * Workflow-only module: the flush runs on a microtask, which is deterministic.
 */
import { ApplicationFailure, CancelledFailure } from '@temporalio/workflow';
import type { ItemResult } from '../contracts/failures.js';

export interface CoalesceLimits<I> {
  /** Most items per call. */
  maxItems: number;
  /**
   * Most bytes per call, as `sizeOf` counts an item (its input and the result it may return):
   * a call's input and result payloads stay well under Temporal's 2 MB limit. @default Infinity
   */
  maxBytes?: number;
  /** @default the item's length as JSON */
  sizeOf?: (input: I) => number;
}

interface Pending<I, O> {
  input: I;
  resolve: (value: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Returns the one-item form of `dispatch`. An item's failure comes back as the same non-retryable
 * `ApplicationFailure` its own activity would have thrown (type `Cancelled`: a `CancelledFailure`
 * with the item's details); a failure of the whole call (after Temporal's retries, or its
 * cancellation) reaches every item of it.
 */
export function coalesce<I, O>(dispatch: (items: I[]) => Promise<ItemResult<O>[]>, limits: CoalesceLimits<I>): (input: I) => Promise<O> {
  const maxBytes = limits.maxBytes ?? Number.POSITIVE_INFINITY;
  let pending: Pending<I, O>[] = [];
  let bytes = 0;
  const flush = () => {
    const chunk = pending;
    pending = [];
    bytes = 0;
    if (chunk.length === 0) return;
    dispatch(chunk.map((p) => p.input)).then(
      (results) => chunk.forEach((p, i) => {
        const result = results[i];
        if (result?.ok) p.resolve(result.value);
        else if (result?.failure.type === 'Cancelled') p.reject(new CancelledFailure(result.failure.message, result.failure.details));
        else p.reject(ApplicationFailure.create({
          type: result?.failure.type ?? 'InternalError',
          message: result?.failure.message ?? 'no result for this item',
          nonRetryable: true,
          details: result?.failure.details ?? [],
        }));
      }),
      (err) => chunk.forEach((p) => p.reject(err)),
    );
  };
  return (input) => new Promise<O>((resolve, reject) => {
    const size = !Number.isFinite(maxBytes) ? 0 : limits.sizeOf ? limits.sizeOf(input) : JSON.stringify(input).length;
    if (pending.length > 0 && bytes + size > maxBytes) flush();
    pending.push({ input, resolve, reject });
    bytes += size;
    if (pending.length >= limits.maxItems) flush();
    else if (pending.length === 1) void Promise.resolve().then(flush);
  });
}
