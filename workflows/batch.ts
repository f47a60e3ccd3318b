/**
 * `batch`: runs every line of a validated input file through the same request pipeline as a sync
 * request (`runChatPipeline`: authorize → reserve → experiment → infer → settle → audit), inside
 * this workflow: one history and shared workflow tasks for many lines, where a child workflow per
 * line cost ~23 history events, a workflow start and five visibility writes each (measured in
 * BENCHMARKS.md: 14 → see there). A line's request ID is fixed by batch and line number, and every step is idempotent on it.
 *
 * Lines that start or finish together share their activities (`coalesce`): one `admitLines`, one
 * `inferLines` per pool (on the pool's batch queue) and one `completeLines` per chunk of up to
 * `CHUNK_LINES`, each line still run by the same step functions with its own result and its own
 * failure handling in the pipeline; the per-activity cost of Temporal and the SDK is then shared
 * (10,000 lines: 45 → 122 lines/s, 9.6 → 0.5 history events per line; BENCHMARKS.md).
 *
 * A sliding window keeps `concurrency` lines in flight; after `linesPerRun` lines (or when Temporal
 * suggests it) the window drains and the workflow continues as new with its progress, so history
 * stays bounded and no line crosses a run boundary: a resumed batch never starts a line twice.
 * The batch workflow, and so its lines' activities, carry Temporal priority 3 (sync 1, async 2)
 * and the tenant as fairness key.
 * Cancel (signal) and expiry stop scheduling, cancel the lines in flight (each releases its
 * reservation), end the lines still waiting for a pipeline slot unadmitted, and write partial output.
 */
import {
  ApplicationFailure,
  CancellationScope,
  ContinueAsNew,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { BatchActivities } from '../activities/batch.js';
import type { WebhookActivities } from '../activities/webhooks.js';
import { runChatPipeline, type PipelineHooks } from './pipeline.js';
import { runEmbeddingsPipeline } from './embeddings-request.js';
import { coalescedDispatch, lineCalls, resumedDispatch, runChatLines } from './batch-lines.js';
import { lineSlots, type LineSlots } from './line-slots.js';
import { BATCH_PROFILES as PROFILES } from '../contracts/profiles.js';
import type { BatchLine, BatchProgress, BatchWorkflowInput } from '../contracts/batch.js';
import type { ChatRequestInput } from '../contracts/chat.js';
import { SearchAttributes, inferenceBatchTaskQueue } from '../contracts/ids.js';

/** Stops scheduling lines, cancels those in flight, writes partial output; status `cancelled`. */
export const cancelBatchSignal = defineSignal('cancelBatch');
/**
 * `pipelinesPeak`: the most lines of this run that held a pipeline slot at once (see
 * `PIPELINE_LINES`, counted by `lineSlots`); null before the run's first line or in a run
 * recorded before `batch-bounded-pipelines` (no slots).
 */
export const batchProgressQuery = defineQuery<BatchProgress & { inFlight: number; pipelinesPeak: number | null }>('batchProgress');

/**
 * Most lines whose admission, inference or completion share one activity when the input does not
 * say (`chunkLines`: batches started before it existed ran with 64). See `batch-lines.ts`.
 */
const CHUNK_LINES = 64;

/**
 * Most lines running the request pipeline at once (lines off the chunk path, embeddings lines),
 * since `batch-bounded-pipelines`: what one workflow activation runs grows with them
 * (`line-slots.ts`). The others wait for a slot, still counted in flight.
 */
const PIPELINE_LINES = 64;

/** Lines asked for per load (before `batch-chunk-pages`; since, the chunk multiple of it, see `pageLines`). */
const LOAD_PAGE = 200;

/**
 * Lines asked for per load since `batch-chunk-pages`: `LOAD_PAGE` rounded up to whole chunks.
 * Lines start when slots free up, and the slots of a chunk free up together, so with pages of
 * whole chunks each `admitLines` gets a full chunk; with pages of 200 and chunks of 256, a chunk
 * was cut at every page's end (steady state 88 + 112 lines per chunk, not 256). A page stays
 * under the load's byte limit (`MAX_PAGE_BYTES`, activities/batch.ts) whatever its line count.
 */
function pageLines(chunkLines: number): number {
  return Math.ceil(LOAD_PAGE / chunkLines) * chunkLines;
}
/** Live counts are written at most this often (workflow time). */
const FLUSH_MS = 1000;

/** Publishes the batch's end-state webhook event (`batch.completed|failed|cancelled`). */
async function publishEnd(batchId: string): Promise<void> {
  const { publishBatchEvent } = proxyActivities<WebhookActivities>(PROFILES.db);
  await publishBatchEvent({ batchId });
}

export async function batch(input: BatchWorkflowInput): Promise<BatchProgress> {
  const acts = proxyActivities<BatchActivities>(PROFILES.db);
  const file = proxyActivities<BatchActivities>(PROFILES.file);
  const local = proxyLocalActivities<BatchActivities>(PROFILES.db);
  let inFlight = 0;
  let slots: LineSlots | null = null;
  let cancelRequested = input.state?.cancelRequested ?? false;
  let expired = false;
  let state: BatchProgress = input.state ?? { afterLine: 0, total: 0, completed: 0, failed: 0, cancelRequested };
  setHandler(cancelBatchSignal, () => {
    cancelRequested = true;
  });
  setHandler(batchProgressQuery, () => ({ ...state, cancelRequested, inFlight, pipelinesPeak: slots?.peak ?? null }));
  const setStatus = (status: string) => upsertSearchAttributes([{ key: SearchAttributes.status, value: status }]);
  const stopped = () => cancelRequested || expired;

  try {
    if (input.state === null) {
      setStatus('validating');
      const v = await file.validateBatch({ batchId: input.batchId });
      if (!v.ok) {
        setStatus('failed');
        await publishEnd(input.batchId);
        return state;
      }
      state = { ...state, total: v.total };
      setStatus('in_progress');
    }

    void sleep(Math.max(0, input.expiresAtMs - Date.now())).then(() => {
      expired = true;
    }, () => undefined);

    const lines = new CancellationScope();
    // Lines started together are admitted by one activity, inferences and completions that are
    // due together run as one each: every line still runs every step of its own.
    const chunkLines = input.chunkLines ?? CHUNK_LINES;
    const calls = lineCalls(lines, chunkLines);
    const dispatch = coalescedDispatch(calls);
    // Since `batch-chunk-path`: chat lines started together run as one unit (`runChatLines`).
    const chunkPath = patched('batch-chunk-path');
    // Since `batch-chunk-pages`: pages of whole chunks (`pageLines`).
    const pageSize = patched('batch-chunk-pages') ? pageLines(chunkLines) : LOAD_PAGE;
    const ended = (ok: boolean) => {
      if (ok) state.completed += 1;
      else state.failed += 1;
      inFlight -= 1;
    };
    // A line's steps outside the chunks are regular activities: a local one keeps the batch's
    // workflow task open while it runs (BENCHMARKS.md, "Chunk activities are regular activities").
    // Since `batch-bounded-pipelines`: at most `PIPELINE_LINES` of them at once (`line-slots.ts`).
    slots = patched('batch-bounded-pipelines') ? lineSlots(PIPELINE_LINES) : null;
    const slot = slots ?? (<T>(run: () => Promise<T>) => run());
    const runLine = (line: BatchLine['input'], through: NonNullable<PipelineHooks['dispatch']> = dispatch): Promise<boolean> => slot(async () => {
      // Since `batch-cancel-skips-waiting-lines`: a line not yet admitted (`through` is the fresh
      // dispatch: an embeddings line, or a chat line off the chunk path) whose slot comes after the
      // batch was cancelled or expired ends without running, as a line never started does: never
      // admitted, its request stays as its page's load made it (`queued`), and `finalizeBatch`
      // writes it `batch_cancelled`/`batch_expired`. A line handed on by the chunk path was
      // admitted and still runs its pipeline, which releases what it holds.
      if (through === dispatch && lines.consideredCancelled && patched('batch-cancel-skips-waiting-lines')) return false;
      try {
        // A `/v1/embeddings` batch: each line one embed activity on the pool's batch queue.
        await lines.run(async () => {
          if ('inputs' in line) await runEmbeddingsPipeline(line, { shieldAdmission: true, embedQueue: inferenceBatchTaskQueue });
          else await runChatPipeline(line, { shieldAdmission: true, dispatch: through });
        });
        return true;
      } catch {
        // The line's own failure (recorded on its request by the pipeline) or its cancellation.
        return false;
      }
    });
    const runTogether = (requests: ChatRequestInput[]) => runChatLines(requests, calls, lines, () => ended(true), (i, done) => {
      void runLine(requests[i] as ChatRequestInput, resumedDispatch(dispatch, done)).then(ended);
    });

    let flushedAt = Date.now();
    let flushed = { completed: state.completed, failed: state.failed };
    const flush = async () => {
      if (flushed.completed === state.completed && flushed.failed === state.failed) return;
      flushed = { completed: state.completed, failed: state.failed };
      flushedAt = Date.now();
      await local.recordBatchProgress({ batchId: input.batchId, ...flushed });
    };

    let page: BatchLine[] = [];
    let loadAfter = state.afterLine;
    let exhausted = false;
    let started = 0;
    while (!stopped()) {
      if (page.length === 0) {
        const loaded = await acts.loadBatchLines({ batchId: input.batchId, afterLine: loadAfter, limit: pageSize });
        if (loaded.scannedThrough === null) {
          exhausted = true;
          break;
        }
        loadAfter = loaded.scannedThrough;
        page = loaded.lines;
        if (page.length === 0) continue;
      }
      await condition(() => inFlight < input.concurrency || stopped());
      if (stopped()) break;
      // Every free slot's line starts in this one turn, so their admissions coalesce.
      const together: ChatRequestInput[] = [];
      do {
        const line = page.shift() as BatchLine;
        state.afterLine = line.lineNo;
        inFlight += 1;
        started += 1;
        if (chunkPath && !('inputs' in line.input)) together.push(line.input);
        else void runLine(line.input).then(ended);
      } while (page.length > 0 && inFlight < input.concurrency && started < input.linesPerRun);
      if (together.length > 0) void runTogether(together);
      if (page.length === 0 && loadAfter > state.afterLine) state.afterLine = loadAfter; // trailing blank lines
      if (started >= input.linesPerRun || workflowInfo().continueAsNewSuggested) break;
      if (Date.now() - flushedAt >= FLUSH_MS) await flush();
    }

    // The last lines drain; a cancel or the window's end meanwhile cancels them too.
    await condition(() => inFlight === 0 || stopped());
    if (stopped()) lines.cancel();
    await condition(() => inFlight === 0);
    await flush();
    state.cancelRequested = cancelRequested;
    if (!stopped() && !exhausted) {
      await continueAsNew<typeof batch>({ ...input, state });
    }

    const outcome = cancelRequested ? 'cancelled' : expired ? 'expired' : 'completed';
    setStatus('finalizing');
    const counts = await file.finalizeBatch({ batchId: input.batchId, outcome });
    state = { ...state, ...counts };
    setStatus(outcome);
    await publishEnd(input.batchId);
    return state;
  } catch (err) {
    if (isCancellation(err) || err instanceof ContinueAsNew) throw err;
    const message = err instanceof Error ? err.message : String(err);
    await CancellationScope.nonCancellable(async () => {
      await acts.failBatch({ batchId: input.batchId, message });
      await publishEnd(input.batchId);
    });
    setStatus('failed');
    throw ApplicationFailure.create({ type: 'InternalError', message: `batch failed: ${message}`, nonRetryable: true });
  }
}
