/**
 * Runs one step for many requests in one activity (a batch's chunk of lines), `concurrency` at a
 * time, each item through the same function as a request of its own. An item's non-retryable
 * `ApplicationFailure` (the step's decision: a refused quota, an unknown model) is that item's
 * result; any other error fails the whole activity for Temporal to retry, which repeats nothing
 * already done because every step is idempotent per request.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { ItemResult } from '../contracts/failures.js';

export async function forEachItem<I, O>(items: readonly I[], concurrency: number, run: (item: I) => Promise<O>): Promise<ItemResult<O>[]> {
  const results = new Array<ItemResult<O>>(items.length);
  let next = 0;
  let failed: { err: unknown } | null = null;
  const lane = async () => {
    while (failed === null && next < items.length) {
      const i = next++;
      try {
        results[i] = { ok: true, value: await run(items[i] as I) };
      } catch (err) {
        if (err instanceof ApplicationFailure && err.nonRetryable) {
          results[i] = { ok: false, failure: { type: err.type ?? 'InternalError', message: err.message, details: [...(err.details ?? [])] } };
        } else {
          failed ??= { err };
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, lane));
  if (failed !== null) throw (failed as { err: unknown }).err;
  return results;
}
