/**
 * `embeddingsRequest`: one `POST /v1/embeddings` request, durable end to end, in its own workflow
 * `embed-<requestId>` (search attribute `SluiceKind=embeddings`). The same steps as a chat request,
 * through the same activities: `admit` (authorize the key and the model as an embeddings model,
 * experiment, reserve the prompt estimate and no completion tokens, route, circuit) → `embed` on
 * the deployment's pool (every input in one activity; a failure records the circuit and tries the
 * next deployment) → `complete` (prompt tokens settled at the model's input price, circuit, audit
 * and outcome). A failure or cancel after the reservation releases it and is audited.
 */
import { ActivityCancellationType, ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { InferenceActivities } from '../activities/inference.js';
import type { UsageEntry } from '../contracts/chat.js';
import type { EmbedOutput, EmbeddingsRequestInput, EmbeddingsResult } from '../contracts/embeddings.js';
import type { FailureDetails, FailureType } from '../contracts/failures.js';
import { inferenceTaskQueue } from '../contracts/ids.js';
import { PIPELINE_PROFILES as PROFILES } from '../contracts/profiles.js';
import { runOverDeployments, type RunHooks } from './over-deployments.js';
import { requestWorkflowHooks } from './request-workflow.js';

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
export interface EmbeddingsPipelineHooks extends RunHooks {
  /** Task queue of the `embed` activity for a deployment's pool. @default inferenceTaskQueue(pool) */
  embedQueue?: (pool: string) => string;
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
  const base = { requestId: input.requestId, tenantId: input.tenantId, keyId: input.keyId, kind: input.kind };
  return runOverDeployments({
    request: input,
    hooks,
    usageStep: EMBED_STEP,
    countsCompletion: false,
    failureSummary: { endpoint: 'embeddings' },
    admit: (steps) => steps.admit({
      ...base, model: input.model, subject: input.subject, promptTokensEstimate: input.promptTokensEstimate, maxTokens: 0, endpoint: 'embeddings',
    }),
    prepare: (admission, { model }) => {
      // Checked again on the effective model (a variant's, or one changed since the API looked).
      if (input.dimensions !== null && admission.authorized.acceptsDimensions !== true) {
        throw refusal('BadRequest', `'dimensions' is not supported by model ${model}`, 'unsupported_parameter', 'dimensions');
      }
    },
    attempt: (deployment) => {
      const { embed } = proxyActivities<InferenceActivities>({
        ...PROFILES.infer,
        taskQueue: (hooks.embedQueue ?? inferenceTaskQueue)(deployment.pool),
        cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      });
      return embed({
        requestId: input.requestId, tenantId: input.tenantId, deployment, inputs: input.inputs, dimensions: input.dimensions,
        maxPromptTokens: input.promptTokensEstimate,
      });
    },
    succeed: async (deployment, out, { steps, model, variant }) => {
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
      return result;
    },
  });
}
