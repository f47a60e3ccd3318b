/**
 * Full decode batches for the llama.cpp backend's context: every sequence that is generating takes
 * part in every decode step.
 *
 * Why: node-llama-cpp's batch dispatcher (3.22, `LlamaContext.dispatchPendingBatch`) decodes, lets
 * each sequence sample its token, then decodes again at once with whatever sequences have queued
 * their next token by then. The sequence sampled last resumes a few microtasks after that check, so
 * it misses the step and rides the next one: with `n` sequences generating, every step carried
 * `n - 1` (measured: 1 of 2, 3 of 4, 7 of 8 on the bench model; BENCHMARKS.md, "Batched decoding
 * measured honestly"). A step costs about the same with one sequence fewer, so 2 slots decoded no
 * faster than 1 and 4 at 3/4 of their rate.
 *
 * The fix is node-llama-cpp's own hook, a custom `itemPrioritizationStrategy`: while fewer items
 * are queued than sequences are generating, it returns no items, and the dispatcher loops (through
 * microtasks only) and asks again; the missing sequence queues its token meanwhile. The wait is
 * bounded (`maxWaits` asks in a row): a sequence that is generating but not about to queue (its
 * last token, a slow callback) costs at most that, then the step goes with what is queued.
 *
 * Opt-in since the fifth session (`SLUICE_LLAMA_FULL_STEPS=true`): on the 2-core VM, at the default
 * 4 slots, node-llama-cpp's own dispatch was ahead through the worker in 5 of 6 rounds of two A/B
 * runs, while directly the difference stayed below the VM's noise (BENCHMARKS.md, "Quiet re-run of
 * issue 18's open targets"). A likely reason: the sequence that misses a step samples while the
 * others decode, an overlap the fuller step gives up.
 */
import type { BatchItem, CustomBatchingPrioritizationStrategy, PrioritizedBatchItem } from 'node-llama-cpp';

/** What {@link createFullBatchStrategy} needs. */
export interface FullBatchOptions {
  /** Sequences inside their sampling loop now (past their prompt: each will queue its next token). */
  generating: () => number;
  /**
   * Asks in a row answered with no items before a step goes with what is queued (each ask is a
   * few microtasks of the dispatcher; a full batch took 3 here).
   * @default 32
   */
  maxWaits?: number;
  /** Called with the number of sequences in each decode step (metrics, tests). @default undefined */
  onBatch?: ((sequences: number) => void) | undefined;
}

/**
 * Shares `size` tokens of one decode step between `items`: an equal share each (a prompt longer
 * than its share is cut, the rest goes in later steps), then what is left to the items in order.
 */
export function fairShares(items: readonly BatchItem[], size: number): PrioritizedBatchItem[] {
  const even = Math.max(1, Math.floor(size / Math.max(1, items.length)));
  let left = size;
  const shares: PrioritizedBatchItem[] = [];
  for (const item of items) {
    const processAmount = Math.min(item.tokens.length, even, left);
    if (processAmount <= 0) break;
    shares.push({ item, processAmount });
    left -= processAmount;
  }
  for (const share of shares) {
    if (left <= 0) break;
    const more = Math.min(share.item.tokens.length - share.processAmount, left);
    share.processAmount += more;
    left -= more;
  }
  return shares;
}

/** A batching strategy that waits (boundedly) for every generating sequence before a decode step. */
export function createFullBatchStrategy(options: FullBatchOptions): CustomBatchingPrioritizationStrategy {
  const maxWaits = options.maxWaits ?? 32;
  let waits = 0;
  return ({ items, size }) => {
    if (items.length < options.generating() && waits < maxWaits) {
      waits++;
      return [];
    }
    waits = 0;
    const shares = fairShares(items, size);
    options.onBatch?.(shares.length);
    return shares;
  };
}
