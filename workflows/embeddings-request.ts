/**
 * `embeddingsRequest`: one `POST /v1/embeddings` request, durable end to end, in its own workflow
 * `embed-<requestId>` (search attribute `SluiceKind=embeddings`). The same steps as a chat request,
 * through the same activities: `admit` (authorize the key and the model as an embeddings model,
 * experiment, reserve the prompt estimate and no completion tokens, route, circuit) → `embed` on
 * the deployment's pool (every input in one activity; a failure records the circuit and tries the
 * next deployment) → `complete` (prompt tokens settled at the model's input price, circuit, audit
 * and outcome). A failure or cancel after the reservation releases it and is audited.
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
import type { Admission } from '../activities/admission.js';
import type { UsageEntry } from '../contracts/chat.js';
import type { EmbedOutput, EmbeddingsRequestInput, EmbeddingsResult } from '../contracts/embeddings.js';
import type { FailureDetails, FailureType } from '../contracts/failures.js';
import { inferenceTaskQueue } from '../contracts/ids.js';
import { CLIENT_FAULTS, PIPELINE_PROFILES as PROFILES } from '../contracts/profiles.js';
import { consumedOf, failureOf } from './failures.js';
import { rateLimitWaitMs } from './pipeline.js';
import { requestWorkflowHooks } from './request-workflow.js';

const clientFaults: readonly string[] = CLIENT_FAULTS;

/** The usage step of an embeddings request (one per request). */
export const EMBED_STEP = 'embed';

function resultOf(model: string, out: EmbedOutput): EmbeddingsResult {
  return {
    object: 'list',
    data: out.vectors.map((embedding, index) => ({ object: 'embedding', index, embedding })),
    model,
    usage: { prompt_tokens: out.promptTokens, total_tokens: out.promptTokens },
  };
}

function refusal(type: FailureType, message: string, code: string, param: string | null): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true, details: [{ code, param, retryAfterSeconds: null } satisfies FailureDetails] });
}

/** How the workflow running the pipeline wants it run (a request's own workflow, or a batch). */
export interface EmbeddingsPipelineHooks {
  /** Database steps as local activities (a request's own workflow); a batch uses regular ones. @default false */
  localActivities?: boolean;
  /** Task queue of the `embed` activity for a deployment's pool. @default inferenceTaskQueue(pool) */
  embedQueue?: (pool: string) => string;
  /** Admission runs to its end even if the line is cancelled meanwhile (see `PipelineHooks.shieldAdmission`). @default false */
  shieldAdmission?: boolean;
  /** An attempt starts on this deployment's pool. */
  onAttempt?: (attempt: { model: string; pool: string; variant: string | null }) => void;
  /** The request ended, after its outcome is recorded. */
  onEnd?: (status: 'succeeded' | 'failed' | 'cancelled') => void;
}

/** `embeddingsRequest`: one request in its own workflow, its progress in the search attributes. */
export async function embeddingsRequest(input: EmbeddingsRequestInput): Promise<EmbeddingsResult> {
  return runEmbeddingsPipeline(input, requestWorkflowHooks());
}

/**
 * Runs one embeddings request to its end (see the top of this file) and returns its result, or
 * throws a non-retryable `ApplicationFailure` (or the cancellation) after releasing the
 * reservation and recording the outcome. Shared by `embeddingsRequest` and batch lines.
 */
export async function runEmbeddingsPipeline(input: EmbeddingsRequestInput, hooks: EmbeddingsPipelineHooks = {}): Promise<EmbeddingsResult> {
  const steps = hooks.localActivities ? proxyLocalActivities<ControlActivities>(PROFILES.db) : proxyActivities<ControlActivities>(PROFILES.db);
  let reserved = false;
  let model = input.model;
  let variant: string | null = null;
  const base = { requestId: input.requestId, tenantId: input.tenantId, keyId: input.keyId, kind: input.kind };
  try {
    const admit = () => steps.admit({
      ...base, model: input.model, subject: input.subject, promptTokensEstimate: input.promptTokensEstimate, maxTokens: 0, endpoint: 'embeddings',
    });
    let admission: Admission;
    for (;;) {
      try {
        admission = await (hooks.shieldAdmission ? CancellationScope.nonCancellable(admit) : admit());
        break;
      } catch (err) {
        // A batch line waits out a per-minute or concurrency limit, as a chat line does.
        const wait = input.kind === 'batch' ? rateLimitWaitMs(err) : null;
        if (wait === null) throw err;
        await sleep(wait);
      }
    }
    reserved = true;
    const { assignment, deployments, acquired } = admission;
    variant = assignment.variant;
    model = assignment.overrides.model ?? input.model;
    // Checked again on the effective model (a variant's, or one changed since the API looked).
    if (input.dimensions !== null && admission.authorized.acceptsDimensions !== true) {
      throw refusal('BadRequest', `'dimensions' is not supported by model ${model}`, 'unsupported_parameter', 'dimensions');
    }
    let lastFailure: unknown = null;
    const firstToTry = acquired === -1 ? deployments.length : acquired;
    for (const [i, deployment] of deployments.entries()) {
      if (i < firstToTry) continue;
      if (i !== acquired && !(await steps.acquireCircuit({ deploymentId: deployment.id }))) continue;
      hooks.onAttempt?.({ model, pool: deployment.pool, variant });
      const { embed } = proxyActivities<InferenceActivities>({
        ...PROFILES.infer,
        taskQueue: (hooks.embedQueue ?? inferenceTaskQueue)(deployment.pool),
        cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      });
      let out: EmbedOutput;
      try {
        out = await embed({
          requestId: input.requestId, tenantId: input.tenantId, deployment, inputs: input.inputs, dimensions: input.dimensions,
          maxPromptTokens: input.promptTokensEstimate,
        });
      } catch (err) {
        const consumed = consumedOf(err);
        if (consumed) {
          const outcome = isCancellation(err) ? 'cancelled' : 'failed';
          await CancellationScope.nonCancellable(() => steps.recordConsumed({
            ...base, step: `${EMBED_STEP}:${outcome}:${deployment.id}`, model, deploymentId: deployment.id, pool: deployment.pool, variant,
            promptTokens: consumed.promptTokens, completionTokens: 0, latencyMs: 0,
          }));
        }
        if (isCancellation(err)) throw err;
        const failure = failureOf(err);
        if (failure && clientFaults.includes(failure.type ?? '')) throw err;
        await steps.recordCircuit({ deploymentId: deployment.id, ok: false });
        lastFailure = err;
        continue;
      }
      const usage: UsageEntry = {
        ...base, step: EMBED_STEP, model, deploymentId: deployment.id, pool: deployment.pool, variant,
        promptTokens: out.promptTokens, completionTokens: 0, latencyMs: out.latencyMs,
      };
      const result = resultOf(model, out);
      await steps.complete({
        settle: usage,
        outcome: {
          ...base, model, status: 'succeeded', result, error: null,
          summary: { endpoint: 'embeddings', deployment: deployment.id, pool: deployment.pool, variant, inputs: input.inputs.length, prompt_tokens: out.promptTokens },
        },
      });
      hooks.onEnd?.('succeeded');
      return result;
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
        ...base, model, status: cancelled ? 'cancelled' : 'failed', result: null,
        error: { type, message: cancelled ? 'cancelled' : (failure?.message ?? 'internal error'), code: details?.code ?? null },
        summary: { endpoint: 'embeddings', variant },
      });
      hooks.onEnd?.(cancelled ? 'cancelled' : 'failed');
    });
    if (cancelled) throw err;
    throw ApplicationFailure.create({
      type, message: failure?.message ?? 'internal error', nonRetryable: true,
      details: [details ?? { code: null, param: null, retryAfterSeconds: null }],
    });
  }
}
