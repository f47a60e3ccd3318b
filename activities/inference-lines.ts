/** The batch chunk activity: `inferLines` runs a chunk of batch lines of one pool in one activity (see {@link createBatchInferenceActivities}). */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ConsumedTokens, InferInput, InferOutput } from '../contracts/chat.js';
import type { EmbedInput, EmbedOutput } from '../contracts/embeddings.js';
import type { FailureDetails, ItemResult } from '../contracts/failures.js';
import { INFER_RETRY } from '../contracts/profiles.js';
import { HEARTBEAT_EVERY_MS, generate, pause, type InferenceDeps } from './inference-generate.js';
import { addConsumed, detailsWith, toFailure } from './inference-failures.js';
import { embedOnce } from './inference-embed.js';
import { observeScheduleToStart } from './inference-queue-metrics.js';

/**
 * A batch line's attempts inside `inferLines`, and the waits between them: the retry policy a
 * line's own `infer` activity has in the workflow (one definition, workflows/profiles.ts).
 */
export const LINE_RETRY = INFER_RETRY;

/**
 * Most bytes of JSON a chunk's result may carry: under Temporal's 2 MB payload limit with room for
 * the envelope. The workflow sizes chunks by an estimate (8 bytes per max token); a chunk whose
 * completions outweigh it would fail as a whole and be generated (and, upstream, bought) again.
 */
export const MAX_CHUNK_RESULT_BYTES = 1536 * 1024;

/**
 * The chunk's results, with the largest completions failed as `completion_too_large` (their tokens
 * in `consumed`, so they are recorded unbilled) until the rest fits {@link MAX_CHUNK_RESULT_BYTES}:
 * those lines fail once, with the error a single oversized completion gets, never re-bought.
 */
export function withinChunkLimit(results: ItemResult<InferOutput>[], limit = MAX_CHUNK_RESULT_BYTES): ItemResult<InferOutput>[] {
  const sizes = results.map((r) => Buffer.byteLength(JSON.stringify(r)));
  let total = sizes.reduce((a, b) => a + b, 0);
  if (total <= limit) return results;
  const out = [...results];
  const largestFirst = out.map((r, i) => i).filter((i) => out[i]?.ok).sort((a, b) => (sizes[b] ?? 0) - (sizes[a] ?? 0));
  for (const i of largestFirst) {
    if (total <= limit) break;
    const r = out[i];
    if (!r?.ok) continue;
    const spent = addConsumed(r.value.failedAttempts, { promptTokens: r.value.promptTokens, completionTokens: r.value.completionTokens });
    const failure: ItemResult<InferOutput> = {
      ok: false,
      failure: {
        type: 'BadRequest',
        message: `completion of ${Buffer.byteLength(r.value.content)} bytes does not fit the batch chunk's result limit`,
        details: [{ ...detailsWith(spent), code: 'completion_too_large' }],
      },
    };
    total += Buffer.byteLength(JSON.stringify(failure)) - (sizes[i] ?? 0);
    out[i] = failure;
  }
  return out;
}

/**
 * The infer step for a chunk of batch lines of one pool, in one activity on the pool's batch task
 * queue (`inferenceBatchTaskQueue`): every line generates through the same backends, queued for
 * a slot behind interactive requests (`priority: 'batch'`), with the retry policy a line's own
 * infer activity would get (`LINE_RETRY`, Retry-After honoured), and comes back as its own
 * result: the completion, its failure after the last attempt (the tokens every attempt spent in
 * `consumed`), or `Cancelled` with what it spent when the chunk is cancelled. The chunk heartbeats
 * while it runs; a chunk whose worker died is run again whole by Temporal (inference is not
 * billed until the line's completion step, so a line generated twice is still billed once).
 */
export function createBatchInferenceActivities(deps: InferenceDeps) {
  async function inferLine(input: InferInput, signal: AbortSignal): Promise<ItemResult<InferOutput>> {
    let spent: ConsumedTokens | null = null;
    for (let attempt = 1; ; attempt++) {
      const run = await generate(deps, input, { signal, priority: 'batch', fairnessKey: input.tenantId ?? '' });
      if (run.ok) return { ok: true, value: { ...run.result, latencyMs: run.latencyMs, failedAttempts: spent } };
      spent = addConsumed(spent, run.spent);
      if (signal.aborted) return { ok: false, failure: { type: 'Cancelled', message: 'generation cancelled', details: [detailsWith(spent)] } };
      const failure = toFailure(run.err, false, spent);
      const app = failure instanceof ApplicationFailure ? failure : null;
      if (attempt >= LINE_RETRY.maximumAttempts || app?.nonRetryable) {
        const message = failure instanceof Error ? failure.message : String(failure);
        const details = (app?.details?.[0] as FailureDetails | undefined) ?? detailsWith(spent);
        return { ok: false, failure: { type: app?.type ?? 'UpstreamUnavailable', message, details: [{ ...details, consumed: spent }] } };
      }
      const backoff = Math.min(LINE_RETRY.maximumIntervalMs, LINE_RETRY.initialIntervalMs * LINE_RETRY.backoffCoefficient ** (attempt - 1));
      const next = app?.nextRetryDelay;
      await pause(typeof next === 'number' ? next : backoff, signal);
    }
  }

  return {
    /** A batch line's embeddings, on the pool's batch queue (its inputs in one activity, as a request's). */
    embed: (input: EmbedInput): Promise<EmbedOutput> => {
      observeScheduleToStart(deps.metrics, deps.pool, 'batch');
      return embedOnce(deps, input);
    },
    async inferLines(input: { items: InferInput[] }): Promise<ItemResult<InferOutput>[]> {
      observeScheduleToStart(deps.metrics, deps.pool, 'batch');
      const ctx = Context.current();
      let done = 0;
      const timer = setInterval(() => ctx.heartbeat({ done, of: input.items.length }), HEARTBEAT_EVERY_MS);
      try {
        return withinChunkLimit(await Promise.all(input.items.map(async (item) => {
          const result = await inferLine(item, ctx.cancellationSignal);
          done += 1;
          return result;
        })));
      } finally {
        clearInterval(timer);
      }
    },
  };
}

export type BatchInferenceActivities = ReturnType<typeof createBatchInferenceActivities>;
