/**
 * The request pipeline every LLM request runs, inside a workflow: a sync or async request in its
 * own `chatRequest` workflow, a batch line inside its `batch` workflow — the same code, so both
 * are authorized, limited, billed and audited alike.
 * authorize → reserve quota → assign experiment → infer (pool queue; retried; circuit-broken;
 * fallback chain) → settle usage → audit + outcome. A failure or cancel after the reservation
 * releases it (compensation) and is audited; nothing is billed for work not done. The admission,
 * fallback and compensation loop is `runOverDeployments`, shared with embeddings.
 * Not a workflow itself: workflow-only module (imports `@temporalio/workflow`).
 */
import { ActivityCancellationType, patched, proxyActivities } from '@temporalio/workflow';
import type { InferenceActivities } from '../activities/inference.js';
import type { AdmitInput, Admission, CompleteInput } from '../activities/admission.js';
import { ANSWERED_EARLY_SUMMARY, type ChatCompletion, type ChatRequestInput, type DeploymentTarget, type GenerateParams, type InferInput, type InferOutput, type JobStatus, type UsageEntry } from '../contracts/chat.js';
import { inferenceTaskQueue } from '../contracts/ids.js';
import { PIPELINE_PROFILES as PROFILES } from '../contracts/profiles.js';
import { runOverDeployments } from './over-deployments.js';
import { consultsCache } from '../domain/cache-eligibility.js';
import type { CacheLookup } from '../activities/cache.js';
import { applyPromptOverride } from '../domain/experiment-prompt.js';
import { completionOf } from '../domain/chat-completion.js';

export { rateLimitWaitMs } from './over-deployments.js';

/** The tokens an attempt's failed retries spent, if any: recorded unbilled before the served attempt is settled. */
export function spentOnRetries(out: InferOutput): NonNullable<InferOutput['failedAttempts']> | null {
  const f = out.failedAttempts;
  return f !== null && f !== undefined && f.promptTokens + f.completionTokens > 0 ? f : null;
}

/** What an attempt runs with: the request's sampling parameters with the variant's overrides (`prepare` of a pipeline). */
export function generateParamsOf(input: ChatRequestInput, { maxTokens, assignment }: Pick<Admission, 'maxTokens' | 'assignment'>): GenerateParams {
  return {
    maxTokens: assignment.overrides.max_tokens ?? maxTokens,
    temperature: assignment.overrides.temperature ?? input.params.temperature ?? 1,
    topP: assignment.overrides.top_p ?? input.params.topP,
    seed: input.params.seed,
    stop: input.params.stop,
    // Only when asked for: the activity input of a request without extras is as it was.
    ...(input.params.extras !== undefined ? { extras: input.params.extras } : {}),
    ...(input.params.rawPrompt === true ? { rawPrompt: true as const } : {}),
  };
}

/**
 * The `infer` activity on `deployment`'s pool queue (a cancel waits for the attempt to stop). An
 * attempt of a request answered from the history carries `ANSWERED_EARLY_SUMMARY` as its summary:
 * the API's sign that this worker settles a served attempt whatever cancel follows (a summary is
 * user metadata, not matched on replay: a history recorded without it replays the same).
 */
export function inferOnPool(deployment: DeploymentTarget, answeredEarly = false): InferenceActivities['infer'] {
  return proxyActivities<InferenceActivities>({
    ...PROFILES.infer,
    taskQueue: inferenceTaskQueue(deployment.pool),
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    ...(answeredEarly ? { summary: ANSWERED_EARLY_SUMMARY } : {}),
  }).infer;
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

/** What a chat request's admission asks: the `admit` step's input. */
export function chatAdmitInput(input: ChatRequestInput): AdmitInput {
  return {
    requestId: input.requestId, tenantId: input.tenantId, keyId: input.keyId, model: input.model, subject: input.subject,
    promptTokensEstimate: input.promptTokensEstimate, maxTokens: input.params.maxTokens ?? null,
    ...(input.metadata !== undefined ? { metadata: input.metadata } : {}),
  };
}

/** What an admitted request's attempts run with: its messages (with the variant's prompt override, if any) and sampling params. */
interface ChatAttempt {
  messages: ChatRequestInput['messages'];
  params: InferInput['params'];
}

/** The attempts' messages and params of an admitted request (requests without overrides send the very same messages). */
export function chatAttemptOf(input: ChatRequestInput, admission: Pick<Admission, 'maxTokens' | 'assignment'>): ChatAttempt {
  return {
    messages: applyPromptOverride(input.messages, admission.assignment.overrides, input.params.rawPrompt === true),
    params: generateParamsOf(input, admission),
  };
}

/** One attempt's `infer` input on `deployment`. */
export function chatInferInput(input: ChatRequestInput, deployment: DeploymentTarget, attempt: ChatAttempt): InferInput {
  // `stream` only on streamed requests: the activity input of every other request is unchanged.
  return { requestId: input.requestId, tenantId: input.tenantId, deployment, messages: attempt.messages, params: attempt.params, ...(input.stream === true ? { stream: true } : {}) };
}

/** The served attempt's completion, and the `complete` step's input that settles and records it. */
export function chatCompletionOf(
  input: ChatRequestInput, deployment: DeploymentTarget, out: InferOutput, served: { model: string; variant: string | null },
): { completion: ChatCompletion; complete: CompleteInput } {
  const { model, variant } = served;
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
  return { completion, complete: { settle: usage, outcome } };
}

/**
 * Runs one request to its end and returns its completion, or throws a non-retryable
 * `ApplicationFailure` (or the cancellation) after releasing the reservation and recording the
 * outcome.
 */
export async function runChatPipeline(input: ChatRequestInput, hooks: PipelineHooks = {}): Promise<ChatCompletion> {
  const step = hooks.onStep ?? (() => undefined);
  /** A cache miss's key: the generated answer is stored under it once settled. */
  let toStore: Extract<CacheLookup, { status: 'miss' }> | null = null;
  /** A sync request the API answers from the history (`api/answer.ts`): its served attempt is settled whatever follows. */
  const answeredEarly = input.answeredEarly === true && hooks.dispatch === undefined;
  return runOverDeployments({
    request: input,
    hooks,
    usageStep: 'infer',
    // A streamed attempt that failed after sending text ends the request: the next deployment
    // would restart the text the client already has. (Only streamed requests fail this way, and
    // none was recorded before streaming existed, so replays of older histories are unchanged.)
    endsOn: ['StreamInterrupted'],
    answeredEarly,
    admit: (steps) => (hooks.dispatch ?? steps).admit(chatAdmitInput(input)),
    prepare: (admission) => chatAttemptOf(input, admission),
    // The response cache (README "Response cache"), behind `patched('response-cache')`
    // (docs/versioning.md), consulted only by a deterministic sync, async or streamed request that
    // allows it: batch lines (their steps coalesced per chunk) and every other request issue no
    // lookup and record no marker. A hit is settled and audited here and needs no deployment.
    shortcut: async ({ messages, params }, { steps, model, variant }) => {
      if (hooks.dispatch !== undefined || input.kind === 'batch' || !consultsCache(params, input.cache) || !patched('response-cache')) return null;
      const lookup = await steps.lookupCache({
        requestId: input.requestId, tenantId: input.tenantId, model, variant, messages, params,
        directive: input.cache ?? null, stream: input.stream === true,
      });
      if (lookup.status === 'miss') toStore = lookup;
      if (lookup.status !== 'hit') return null;
      const e = lookup.entry;
      step('running', 'settle');
      const out: InferOutput = {
        content: e.content, finishReason: e.finishReason, promptTokens: e.promptTokens, completionTokens: e.completionTokens,
        ...(e.logprobs ? { logprobs: e.logprobs as NonNullable<InferOutput['logprobs']> } : {}), latencyMs: 0, failedAttempts: null,
      };
      const completion = completionOf(input, model, out);
      await steps.completeFromCache({
        settle: {
          requestId: input.requestId, step: 'infer', tenantId: input.tenantId, keyId: input.keyId, kind: input.kind,
          model, deploymentId: e.deploymentId, pool: e.pool, variant, promptTokens: e.promptTokens, completionTokens: e.completionTokens, latencyMs: 0, cached: true,
        },
        outcome: {
          requestId: input.requestId, tenantId: input.tenantId, keyId: input.keyId, kind: input.kind, model,
          status: 'succeeded', result: completion, error: null,
          summary: { deployment: e.deploymentId, pool: e.pool, variant, prompt_tokens: e.promptTokens, completion_tokens: e.completionTokens },
        },
      });
      return { result: completion };
    },
    attempt: (deployment, attempt) => (hooks.dispatch?.infer ?? inferOnPool(deployment, answeredEarly))(chatInferInput(input, deployment, attempt)),
    succeed: async (deployment, out, { steps, settling, model, variant, recordConsumed }) => {
      step('running', 'settle');
      const spent = spentOnRetries(out);
      if (spent !== null) await recordConsumed('failed', deployment, spent);
      const { completion, complete } = chatCompletionOf(input, deployment, out, { model, variant });
      const completing = (hooks.dispatch ?? settling).complete(complete);
      // An answer with tool calls is not stored: its call IDs belong to its request (a replay in a
      // later turn of the same conversation would repeat an ID the client already answered).
      const storable = out.finishReason !== 'tool_calls' && (out.toolCalls?.length ?? 0) === 0 ? out.finishReason : null;
      const miss = toStore;
      if (miss === null || storable === null) {
        await completing;
        return completion;
      }
      // Stored beside the settlement; a store that fails leaves the request answered (the next one misses).
      const storing = steps.storeCache({
        requestId: input.requestId, tenantId: input.tenantId, model, key: miss.key, generation: miss.generation, ttlSeconds: miss.ttlSeconds,
        entry: {
          content: out.content, finishReason: storable, promptTokens: out.promptTokens, completionTokens: out.completionTokens,
          logprobs: out.logprobs ?? null, deploymentId: deployment.id, pool: deployment.pool,
        },
      }).catch(() => undefined);
      await Promise.all([completing, storing]);
      return completion;
    },
  });
}
