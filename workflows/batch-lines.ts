/**
 * How a batch's chat lines run their steps: each step of many lines as one activity per chunk
 * (`admitLines`, `inferLines` per pool on the pool's batch queue, `completeLines`), and, behind
 * `patched('batch-chunk-path')`, a chunk of lines started together run as one unit on the way
 * every line takes when nothing goes wrong (admitted, its first deployment's attempt served,
 * settled), without a pipeline, a cancellation scope and a promise chain per line: the SDK's
 * promise hook captures a stack trace for every promise a workflow creates, and that was most of
 * the workflow thread's time (BENCHMARKS.md, "Issue 18 target 2, the per-chunk path").
 *
 * A line leaves the unit at the first step whose result is not the plain one (refused or failed
 * admission, no circuit acquired, a failed or cancelled attempt, tokens spent by failed retries, a
 * failed settlement, the batch cancelled meanwhile) and runs the request pipeline
 * (`runChatPipeline`) from there: the pipeline's first calls of the steps already done answer with
 * their results, so the line's failure handling (release, fallback, unbilled usage, its outcome)
 * is the pipeline's own, and no step runs twice. Each line's activity inputs are those the
 * pipeline builds (`chatAdmitInput`, `chatAttemptOf`, `chatInferInput`, `chatCompletionOf`).
 * Workflow-only module.
 */
import { CancellationScope, proxyActivities } from '@temporalio/workflow';
import type { ControlActivities } from '../activities/index.js';
import type { AdmitInput, Admission, CompleteInput } from '../activities/admission.js';
import type { BatchInferenceActivities } from '../activities/inference-lines.js';
import type { ChatRequestInput, DeploymentTarget, InferInput, InferOutput } from '../contracts/chat.js';
import type { ItemResult } from '../contracts/failures.js';
import { BATCH_PROFILES as PROFILES } from '../contracts/profiles.js';
import { inferenceBatchTaskQueue } from '../contracts/ids.js';
import { coalesce, dispatchAll, type CoalesceLimits, type Settled } from './coalesce.js';
import { chatAdmitInput, chatAttemptOf, chatCompletionOf, chatInferInput, spentOnRetries, type PipelineHooks } from './pipeline.js';
import { servedAs } from './over-deployments.js';

/** Most bytes of prompts and completions a chunk's input or result may carry. */
const CHUNK_BYTES = 512 * 1024;

type Dispatch = NonNullable<PipelineHooks['dispatch']>;
type Costed = { costMicros: number };
type ChunkCall<I, O> = (items: I[]) => Promise<ItemResult<O>[]>;

/** The chunk activities of a batch's lines, and the limits that split lines into chunks. */
interface LineCalls {
  admit: ChunkCall<AdmitInput, Admission>;
  /** Per pool, on its batch queue. */
  infer: (pool: string) => ChunkCall<InferInput, InferOutput>;
  complete: ChunkCall<CompleteInput, Costed>;
  limits: { admit: CoalesceLimits<AdmitInput>; infer: CoalesceLimits<InferInput>; complete: CoalesceLimits<CompleteInput> };
}

/**
 * The chunk activities: admission and completion shielded from cancellation (see
 * `shieldAdmission`: once a line's inference is done, its settlement and audit run to their end);
 * inference in `lines`, so the batch's cancel cancels it.
 */
export function lineCalls(lines: CancellationScope, chunkLines: number): LineCalls {
  const acts = proxyActivities<ControlActivities>(PROFILES.db);
  const byPool = new Map<string, ChunkCall<InferInput, InferOutput>>();
  return {
    admit: (items) => CancellationScope.nonCancellable(() => acts.admitLines({ items })),
    infer: (pool) => {
      let call = byPool.get(pool);
      if (call === undefined) {
        const { inferLines } = proxyActivities<BatchInferenceActivities>({ ...PROFILES.lineInference, taskQueue: inferenceBatchTaskQueue(pool) });
        call = (items) => lines.run(() => inferLines({ items }));
        byPool.set(pool, call);
      }
      return call;
    },
    complete: (items) => CancellationScope.nonCancellable(() => acts.completeLines({ items })),
    limits: {
      admit: { maxItems: chunkLines },
      // The prompt, and the most its completion can weigh: 8 bytes of JSON per token.
      infer: { maxItems: chunkLines, maxBytes: CHUNK_BYTES, sizeOf: (i) => JSON.stringify(i).length + i.params.maxTokens * 8 },
      complete: { maxItems: chunkLines, maxBytes: CHUNK_BYTES },
    },
  };
}

/** The one-line form of the calls (`coalesce`): lines' steps due in the same turn share a chunk. */
export function coalescedDispatch(calls: LineCalls): Dispatch {
  const inferByPool = new Map<string, (line: InferInput) => Promise<InferOutput>>();
  return {
    admit: coalesce(calls.admit, calls.limits.admit),
    infer: (line) => {
      let infer = inferByPool.get(line.deployment.pool);
      if (infer === undefined) {
        infer = coalesce(calls.infer(line.deployment.pool), calls.limits.infer);
        inferByPool.set(line.deployment.pool, infer);
      }
      return infer(line);
    },
    complete: coalesce(calls.complete, calls.limits.complete),
  };
}

/** What a line's steps already returned when it leaves the chunk. */
interface StepsDone {
  admit: Settled<Admission>;
  infer?: Settled<InferOutput>;
  complete?: Settled<Costed>;
}

/** `next`, whose first call answers with `done` (when given) instead. */
function answeredOnce<I, O>(done: Settled<O> | undefined, next: (input: I) => Promise<O>): (input: I) => Promise<O> {
  let first = done;
  return (input) => {
    const d = first;
    if (d === undefined) return next(input);
    first = undefined;
    return d.ok ? Promise.resolve(d.value) : Promise.reject(d.err);
  };
}

/** `dispatch` for a line that leaves its chunk with `done`: the pipeline's first call of each step done gets its result. */
export function resumedDispatch(dispatch: Dispatch, done: StepsDone): Dispatch {
  return {
    admit: answeredOnce(done.admit, dispatch.admit),
    infer: answeredOnce(done.infer, dispatch.infer),
    complete: answeredOnce(done.complete, dispatch.complete),
  };
}

/**
 * Runs chat lines started together as one unit (see the top of this file). `served(i)` is called
 * for each line settled on the way; `resume(i, done)` for each line that leaves it (the caller
 * runs its pipeline with `resumedDispatch`). Resolves when every line was served or handed on.
 */
export async function runChatLines(
  requests: readonly ChatRequestInput[], calls: LineCalls, lines: CancellationScope,
  served: (i: number) => void, resume: (i: number, done: StepsDone) => void,
): Promise<void> {
  const admitted = await dispatchAll(calls.admit, calls.limits.admit, requests.map(chatAdmitInput));
  interface Attempt { i: number; admit: Settled<Admission>; admission: Admission; deployment: DeploymentTarget; input: InferInput }
  const byPool = new Map<string, Attempt[]>();
  admitted.forEach((admit, i) => {
    const request = requests[i] as ChatRequestInput;
    const deployment = admit.ok ? admit.value.deployments[admit.value.acquired] : undefined;
    if (!admit.ok || deployment === undefined || lines.consideredCancelled) return resume(i, { admit });
    let input: InferInput;
    try {
      input = chatInferInput(request, deployment, chatAttemptOf(request, admit.value));
    } catch {
      return resume(i, { admit }); // the pipeline's own `prepare` fails it the same way, compensated
    }
    const pool = byPool.get(deployment.pool) ?? [];
    pool.push({ i, admit, admission: admit.value, deployment, input });
    byPool.set(deployment.pool, pool);
  });

  // Each pool's lines are settled as soon as its inferences are back.
  await Promise.all([...byPool].map(async ([pool, attempts]) => {
    const results = await dispatchAll(calls.infer(pool), calls.limits.infer, attempts.map((a) => a.input));
    const completing: Array<{ i: number; admit: Settled<Admission>; infer: Settled<InferOutput>; input: CompleteInput }> = [];
    attempts.forEach((a, k) => {
      const infer = results[k] as Settled<InferOutput>;
      if (!infer.ok || lines.consideredCancelled || spentOnRetries(infer.value) !== null) return resume(a.i, { admit: a.admit, infer });
      const { assignment } = a.admission;
      const request = requests[a.i] as ChatRequestInput;
      const { complete } = chatCompletionOf(request, a.deployment, infer.value, servedAs(request.model, assignment));
      completing.push({ i: a.i, admit: a.admit, infer, input: complete });
    });
    if (completing.length === 0) return;
    const settled = await dispatchAll(calls.complete, calls.limits.complete, completing.map((c) => c.input));
    completing.forEach((c, k) => {
      const complete = settled[k] as Settled<Costed>;
      if (complete.ok) served(c.i);
      else resume(c.i, { admit: c.admit, infer: c.infer, complete });
    });
  }));
}
