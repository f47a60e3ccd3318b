/**
 * `coalesce`: the calls a batch's lines make in one turn of the workflow leave as one activity
 * call, split by item count and size, and each line gets back its own result or failure.
 */
import { describe, expect, it } from 'vitest';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { coalesce } from '../../workflows/coalesce.js';
import type { ItemResult } from '../../contracts/failures.js';

function recorder<I>(answer: (item: I) => ItemResult<string> = (item) => ({ ok: true, value: `done:${String(item)}` })) {
  const calls: I[][] = [];
  const dispatch = async (items: I[]) => {
    calls.push(items);
    return items.map(answer);
  };
  return { calls, dispatch };
}

describe('coalesce', () => {
  it('sends the calls of one turn as one call, and a later turn\'s as another', async () => {
    const { calls, dispatch } = recorder<number>();
    const one = coalesce(dispatch, { maxItems: 10 });
    const first = await Promise.all([one(1), one(2), one(3)]);
    const second = await Promise.all([one(4)]);
    expect(first).toEqual(['done:1', 'done:2', 'done:3']);
    expect(second).toEqual(['done:4']);
    expect(calls).toEqual([[1, 2, 3], [4]]);
  });

  it('splits a turn by item count and by size', async () => {
    const byCount = recorder<number>();
    const counted = coalesce(byCount.dispatch, { maxItems: 2 });
    await Promise.all([1, 2, 3, 4, 5].map((n) => counted(n)));
    expect(byCount.calls).toEqual([[1, 2], [3, 4], [5]]);

    const bySize = recorder<string>();
    const sized = coalesce(bySize.dispatch, { maxItems: 100, maxBytes: 10, sizeOf: (s) => s.length });
    await Promise.all(['aaaa', 'bbbb', 'cccc', 'dddddddddddddd', 'e'].map((s) => sized(s)));
    // An item bigger than the limit still goes, alone.
    expect(bySize.calls).toEqual([['aaaa', 'bbbb'], ['cccc'], ['dddddddddddddd'], ['e']]);
  });

  it('gives each item its own failure: a non-retryable ApplicationFailure, or a CancelledFailure with its details', async () => {
    const { dispatch } = recorder<string>((item) => item === 'ok'
      ? { ok: true, value: 'fine' }
      : item === 'cancel'
        ? { ok: false, failure: { type: 'Cancelled', message: 'generation cancelled', details: [{ consumed: { promptTokens: 3, completionTokens: 1 } }] } }
        : { ok: false, failure: { type: 'QuotaExceeded', message: 'limit', details: [{ code: 'rate_limit_exceeded' }] } });
    const one = coalesce(dispatch, { maxItems: 10 });
    const [ok, refused, cancelled] = await Promise.allSettled([one('ok'), one('refuse'), one('cancel')]);
    expect(ok).toEqual({ status: 'fulfilled', value: 'fine' });
    const failure = (refused as PromiseRejectedResult).reason;
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ type: 'QuotaExceeded', message: 'limit', nonRetryable: true, details: [{ code: 'rate_limit_exceeded' }] });
    const cancel = (cancelled as PromiseRejectedResult).reason;
    expect(cancel).toBeInstanceOf(CancelledFailure);
    expect(cancel.details).toEqual([{ consumed: { promptTokens: 3, completionTokens: 1 } }]);
  });

  it('fails every item of a call that failed as a whole', async () => {
    const lost = new Error('activity timed out');
    const one = coalesce<number, string>(async () => { throw lost; }, { maxItems: 10 });
    const results = await Promise.allSettled([one(1), one(2)]);
    expect(results).toEqual([{ status: 'rejected', reason: lost }, { status: 'rejected', reason: lost }]);
  });
});
