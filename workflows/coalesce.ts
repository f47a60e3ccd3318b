/**
 * Coalesces one step of many requests into one activity call: a batch's lines each call the step
 * as if it were their own activity (the same `runChatPipeline` code as a sync request), and the
 * calls made in the same turn of the workflow (lines started together, inference results that
 * arrived in the same workflow task) leave as one activity over all of them. What Temporal and
 * the SDK cost per activity (history events, a task, a round trip) is then shared by the chunk.
 * `dispatchAll` sends a whole chunk's items at once, split into calls by the same limits, without
 * a promise per item (the SDK's promise hook captures a stack trace for each: BENCHMARKS.md).
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

/** An item's end as its own activity call would have ended: its value, or what it would have thrown. */
export type Settled<O> = { ok: true; value: O } | { ok: false; err: unknown };

/**
 * An item's result from a call: its value, or the same non-retryable `ApplicationFailure` its
 * own activity would have thrown (type `Cancelled`: a `CancelledFailure` with the item's details).
 */
function settledOf<O>(result: ItemResult<O> | undefined): Settled<O> {
  if (result?.ok) return { ok: true, value: result.value };
  if (result?.failure.type === 'Cancelled') return { ok: false, err: new CancelledFailure(result.failure.message, result.failure.details) };
  return {
    ok: false,
    err: ApplicationFailure.create({
      type: result?.failure.type ?? 'InternalError',
      message: result?.failure.message ?? 'no result for this item',
      nonRetryable: true,
      details: result?.failure.details ?? [],
    }),
  };
}

/** Groups items into calls: a call is sent before an item that would take it past `maxBytes`, and once it has `maxItems`. */
function chunker<T, I>(limits: CoalesceLimits<I>, inputOf: (item: T) => I, send: (items: T[]) => void) {
  const maxBytes = limits.maxBytes ?? Number.POSITIVE_INFINITY;
  let pending: T[] = [];
  let bytes = 0;
  const flush = () => {
    const chunk = pending;
    pending = [];
    bytes = 0;
    if (chunk.length > 0) send(chunk);
  };
  /** Adds an item; returns how many the unsent call now holds. */
  const add = (item: T): number => {
    const input = inputOf(item);
    const size = !Number.isFinite(maxBytes) ? 0 : limits.sizeOf ? limits.sizeOf(input) : JSON.stringify(input).length;
    if (pending.length > 0 && bytes + size > maxBytes) flush();
    pending.push(item);
    bytes += size;
    if (pending.length >= limits.maxItems) flush();
    return pending.length;
  };
  return { add, flush };
}

interface Pending<I, O> {
  input: I;
  resolve: (value: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Returns the one-item form of `dispatch`. An item's failure comes back as its own activity's
 * would (`settledOf`); a failure of the whole call (after Temporal's retries, or its
 * cancellation) reaches every item of it.
 */
export function coalesce<I, O>(dispatch: (items: I[]) => Promise<ItemResult<O>[]>, limits: CoalesceLimits<I>): (input: I) => Promise<O> {
  const calls = chunker<Pending<I, O>, I>(limits, (p) => p.input, (chunk) => {
    dispatch(chunk.map((p) => p.input)).then(
      (results) => chunk.forEach((p, i) => {
        const settled = settledOf(results[i]);
        if (settled.ok) p.resolve(settled.value);
        else p.reject(settled.err);
      }),
      (err) => chunk.forEach((p) => p.reject(err)),
    );
  });
  return (input) => new Promise<O>((resolve, reject) => {
    if (calls.add({ input, resolve, reject }) === 1) void Promise.resolve().then(calls.flush);
  });
}

/**
 * `items` as calls of `dispatch` split by `limits` (as `coalesce` would split them), all sent at
 * once; each item's end in order. A failure of a whole call reaches every item of it.
 */
export async function dispatchAll<I, O>(dispatch: (items: I[]) => Promise<ItemResult<O>[]>, limits: CoalesceLimits<I>, items: readonly I[]): Promise<Settled<O>[]> {
  const calls: Array<Promise<Settled<O>[]>> = [];
  const chunks = chunker<I, I>(limits, (i) => i, (chunk) => {
    calls.push(dispatch(chunk).then((results) => chunk.map((_, i) => settledOf(results[i])), (err: unknown) => chunk.map(() => ({ ok: false as const, err }))));
  });
  for (const item of items) chunks.add(item);
  chunks.flush();
  return (await Promise.all(calls)).flat();
}
