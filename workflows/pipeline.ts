/**
 * The request pipeline every LLM request runs, inside a workflow: a sync or async request in its
 * own `chatRequest` workflow, a batch line inside its `batch` workflow — the same code, so both
 * are authorized, limited, billed and audited alike.
 * authorize → reserve quota → assign experiment → infer (pool queue; retried; circuit-broken;
 * fallback chain) → settle usage → audit + outcome. A failure or cancel after the reservation
 * releases it (compensation) and is audited; nothing is billed for work not done.
 * Not a workflow itself: workflow-only module (imports `@temporalio/workflow`).
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  sleep,
} from '@temporalio/workflow';
import type { ControlActivities } from '../activities/index.js';
import type { InferenceActivities } from '../activities/inference.js';
import type { AdmitInput, Admission, CompleteInput } from '../activities/admission.js';
import type { ChatCompletion, ChatRequestInput, ConsumedTokens, DeploymentTarget, InferInput, InferOutput, JobStatus, UsageEntry } from '../contracts/chat.js';
import type { FailureDetails, FailureType } from '../contracts/failures.js';
import { inferenceTaskQueue } from '../contracts/ids.js';
import { consumedOf, failureOf } from './failures.js';
import { CLIENT_FAULTS, PIPELINE_PROFILES as PROFILES } from '../contracts/profiles.js';

/** Failure types that end the request instead of trying the next deployment. */
const clientFaults: readonly string[] = CLIENT_FAULTS;

/** Limits a batch line waits out instead of failing: those that free up within a minute. */
const WAITABLE_LIMITS: readonly string[] = ['rate_limit_exceeded', 'tokens_rate_limit_exceeded', 'concurrency_limit_exceeded'];

/** How long to wait before admitting again after a waitable refusal (with jitter, so lines spread out); null otherwise. */
export function rateLimitWaitMs(err: unknown): number | null {
  const failure = failureOf(err);
  const details = failure?.details?.[0] as FailureDetails | undefined;
  if (failure?.type !== 'QuotaExceeded' || !WAITABLE_LIMITS.includes(details?.code ?? '')) return null;
  const base = Math.max(1, details?.retryAfterSeconds ?? 1) * 1000;
  return base + Math.floor(Math.random() * Math.min(base, 2000)); // seeded per workflow: replays agree
}

function completionOf(input: ChatRequestInput, model: string, out: InferOutput): ChatCompletion {
  return {
    id: `chatcmpl-${input.requestId}`,
    object: 'chat.completion',
    created: input.created,
    model,
    system_fingerprint: null,
    choices: [{ index: 0, message: { role: 'assistant', content: out.content, refusal: null }, logprobs: out.logprobs ? { content: out.logprobs, refusal: null } : null, finish_reason: out.finishReason }],
    usage: { prompt_tokens: out.promptTokens, completion_tokens: out.completionTokens, total_tokens: out.promptTokens + out.completionTokens },
  };
}

/** What the workflow running the pipeline learns of it as it goes (all optional). */
export interface PipelineHooks {
  /**
   * The request's database steps as local activities on the worker running the workflow (the
   * workflow decides, so every replay of its history agrees; docs/versioning.md). @default false
   */
  localActivities?: boolean;
  /** The request's status and current step changed (for queries). */
  onStep?: (status: JobStatus, step: string) => void;
  /** An inference attempt starts on this deployment's pool, with the request's final model and variant. */
  onAttempt?: (attempt: { model: string; pool: string; variant: string | null }) => void;
  /**
   * Admission runs to its end even if the request is cancelled meanwhile, so a reservation it made
   * is released by the compensation at once (a cancelled admission that committed its
   * reservation leaves it to the reconciler, which releases it only once the request's workflow
   * has closed). Batch lines use it: a batch cancels its lines in flight all together, inside a
   * workflow that goes on running. @default false (`chatRequest` keeps the behaviour its histories recorded)
   */
  shieldAdmission?: boolean;
  /**
   * Runs admission, inference and completion through these instead of one
   * activity each: a batch passes calls that coalesce its lines' steps into one activity per chunk
   * of lines (`coalesce`), each line still admitted, generated, settled and audited on its own by
   * the same step functions, and its failures handled by this pipeline as its own.
   * @default the `admit`, `infer` and `complete` activities
   */
  dispatch?: {
    admit: (input: AdmitInput) => Promise<Admission>;
    /** An inference attempt on `input.deployment` (instead of an `infer` activity on its pool's queue). */
    infer: (input: InferInput) => Promise<InferOutput>;
    complete: (input: CompleteInput) => Promise<{ costMicros: number }>;
  };
  /** The request ended: after its outcome is recorded. */
  onEnd?: (status: 'succeeded' | 'failed' | 'cancelled') => void;
}

/**
 * Runs one request to its end and returns its completion, or throws a non-retryable
 * `ApplicationFailure` (or the cancellation) after releasing the reservation and recording the
 * outcome.
 */
export async function runChatPipeline(input: ChatRequestInput, hooks: PipelineHooks = {}): Promise<ChatCompletion> {
  const steps = hooks.localActivities
    ? proxyLocalActivities<ControlActivities>(PROFILES.db)
    : proxyActivities<ControlActivities>(PROFILES.db);
  const step = hooks.onStep ?? (() => undefined);
  const { admit: admitStep, complete: completeStep } = hooks.dispatch ?? steps;

  let reserved = false;
  let model = input.model;
  let variant: string | null = null;
  /** Unbilled usage row for tokens spent by this deployment's failed or cancelled attempts. */
  const recordConsumed = (outcome: 'failed' | 'cancelled', deployment: DeploymentTarget, consumed: ConsumedTokens) =>
    CancellationScope.nonCancellable(() => steps.recordConsumed({
      requestId: input.requestId, step: `infer:${outcome}:${deployment.id}`, tenantId: input.tenantId, keyId: input.keyId, kind: input.kind,
      model, deploymentId: deployment.id, pool: deployment.pool, variant,
      promptTokens: consumed.promptTokens, completionTokens: consumed.completionTokens, latencyMs: 0,
    }));
  try {
    const admit = () => admitStep({
      requestId: input.requestId, tenantId: input.tenantId, keyId: input.keyId, model: input.model, subject: input.subject,
      promptTokensEstimate: input.promptTokensEstimate, maxTokens: input.params.maxTokens ?? null,
    });
    let admission: Admission;
    for (;;) {
      try {
        admission = await (hooks.shieldAdmission ? CancellationScope.nonCancellable(admit) : admit());
        break;
      } catch (err) {
        // A batch line refused by a per-minute or concurrency limit waits its turn (the batch's
        // window slot stays taken: the batch slows to the tenant's limits) until its batch
        // expires or is cancelled; a sync or async caller gets the 429 and decides.
        const wait = input.kind === 'batch' ? rateLimitWaitMs(err) : null;
        if (wait === null) throw err;
        step('queued', 'rate-limited');
        await sleep(wait);
      }
    }
    reserved = true;
    /** `acquired`: index of the deployment whose circuit admission acquired (-1: all were open). */
    const { maxTokens, assignment, deployments, acquired } = admission;
    variant = assignment.variant;
    model = assignment.overrides.model ?? input.model;
    const params = {
      maxTokens: assignment.overrides.max_tokens ?? maxTokens,
      temperature: assignment.overrides.temperature ?? input.params.temperature ?? 1,
      topP: assignment.overrides.top_p ?? input.params.topP,
      seed: input.params.seed,
      stop: input.params.stop,
      // Only when asked for: the activity input of a request without extras is as it was.
      ...(input.params.extras !== undefined ? { extras: input.params.extras } : {}),
      ...(input.params.rawPrompt === true ? { rawPrompt: true as const } : {}),
    };

    let lastFailure: unknown = null;
    // Admission tried the circuits up to `acquired` (all of them when -1).
    const firstToTry = acquired === -1 ? deployments.length : acquired;
    for (const [i, deployment] of deployments.entries()) {
      if (i < firstToTry) continue;
      if (i !== acquired && !(await steps.acquireCircuit({ deploymentId: deployment.id }))) continue;
      step('running', `infer:${deployment.id}`);
      hooks.onAttempt?.({ model, pool: deployment.pool, variant });
      const { infer } = proxyActivities<InferenceActivities>({
        ...PROFILES.infer,
        taskQueue: inferenceTaskQueue(deployment.pool),
        cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      });
      let out: InferOutput;
      try {
        // `stream` only on streamed requests: the activity input of every other request is unchanged.
        const inferInput: InferInput = { requestId: input.requestId, tenantId: input.tenantId, deployment, messages: input.messages, params, ...(input.stream === true ? { stream: true } : {}) };
        out = await (hooks.dispatch?.infer ?? infer)(inferInput);
      } catch (err) {
        const consumed = consumedOf(err);
        if (consumed) await recordConsumed(isCancellation(err) ? 'cancelled' : 'failed', deployment, consumed);
        if (isCancellation(err)) throw err;
        const failure = failureOf(err);
        if (failure && clientFaults.includes(failure.type ?? '')) throw err;
        await steps.recordCircuit({ deploymentId: deployment.id, ok: false });
        // A streamed attempt that failed after sending text ends the request: the next deployment
        // would restart the text the client already has. (Only streamed requests fail this way, and
        // none was recorded before streaming existed, so replays of older histories are unchanged.)
        if (failure?.type === 'StreamInterrupted') throw err;
        lastFailure = err;
        continue;
      }
      step('running', 'settle');
      const spentByFailures = out.failedAttempts;
      if (spentByFailures && spentByFailures.promptTokens + spentByFailures.completionTokens > 0) {
        await recordConsumed('failed', deployment, spentByFailures);
      }
      const usage: UsageEntry = {
        requestId: input.requestId, step: 'infer', tenantId: input.tenantId, keyId: input.keyId, kind: input.kind,
        model, deploymentId: deployment.id, pool: deployment.pool, variant,
        promptTokens: out.promptTokens, completionTokens: out.completionTokens, latencyMs: out.latencyMs,
      };
      const completion = completionOf(input, model, out);
      const outcome = {
        requestId: input.requestId, tenantId: input.tenantId, keyId: input.keyId, kind: input.kind, model,
        status: 'succeeded' as const, result: completion, error: null,
        summary: { deployment: deployment.id, pool: deployment.pool, variant, prompt_tokens: out.promptTokens, completion_tokens: out.completionTokens },
      };
      await completeStep({ settle: usage, outcome });
      step('succeeded', 'done');
      hooks.onEnd?.('succeeded');
      return completion;
    }
    const cause = failureOf(lastFailure);
    throw ApplicationFailure.create({
      type: 'NoDeploymentAvailable' satisfies FailureType,
      message: deployments.length === 0
        ? `model ${model} has no active deployment`
        : `no deployment of ${model} could serve the request${cause ? `: ${cause.message}` : ' (all circuits open)'}`,
      nonRetryable: true,
      details: [{ code: 'model_unavailable', param: null, retryAfterSeconds: 5 } satisfies FailureDetails],
    });
  } catch (err) {
    const cancelled = isCancellation(err);
    const failure = failureOf(err);
    const type = cancelled ? 'Cancelled' : (failure?.type ?? 'InternalError');
    const details = (failure?.details?.[0] ?? null) as FailureDetails | null;
    await CancellationScope.nonCancellable(async () => {
      if (reserved) await steps.releaseQuota({ requestId: input.requestId });
      await steps.recordOutcome({
        requestId: input.requestId, tenantId: input.tenantId, keyId: input.keyId, kind: input.kind, model,
        status: cancelled ? 'cancelled' : 'failed', result: null,
        error: { type, message: cancelled ? 'cancelled' : (failure?.message ?? 'internal error'), code: details?.code ?? null },
        summary: { variant },
      });
      step(cancelled ? 'cancelled' : 'failed', 'done');
      hooks.onEnd?.(cancelled ? 'cancelled' : 'failed');
    });
    if (cancelled) throw err;
    throw ApplicationFailure.create({
      type,
      message: failure?.message ?? 'internal error',
      nonRetryable: true,
      details: [details ?? { code: null, param: null, retryAfterSeconds: null }],
    });
  }
}
