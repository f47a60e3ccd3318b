/**
 * A legacy completion with several prompts (`prompt: ["a", "b", …]`), inside its one
 * `completionRequest` workflow: authorized, assigned and reserved once (the reservation holds
 * every prompt's worst case: their prompt estimates and `max_tokens` each), then the prompts in
 * order, each tried over the deployments on its own (fallback, circuits, retries as a chat
 * request's attempt), settled as its own usage step (`promptUsageStep`) and audited as soon as it
 * is served. The answer has one choice per prompt (`index` i), usage summed, and is all or
 * nothing: a prompt that fails fails the request; the prompts served before it stay billed (they
 * were generated), the failed one's spent tokens are recorded unbilled, the rest of the
 * reservation is released. No response-cache lookup (README "Legacy completions").
 * Workflow-only module (imports `@temporalio/workflow` through the pipeline).
 */
import type { ChatCompletion, GenerateParams, InferOutput, UsageEntry } from '../contracts/chat.js';
import { promptUsageStep, type CompletionRequestInput } from '../contracts/completions.js';
import type { Admission } from '../activities/admission.js';
import { applyPromptOverride } from '../domain/experiment-prompt.js';
import { chatAdmitInput, chatCompletionOf, generateParamsOf, inferOnPool, spentOnRetries, type PipelineHooks } from './pipeline.js';
import { completionOf } from '../domain/chat-completion.js';
import { runOverDeployments } from './over-deployments.js';

/** The request's completion over the prompts served so far: choice i is prompt i's, usage summed. */
function completionOfPrompts(input: CompletionRequestInput, model: string, outs: readonly InferOutput[]): ChatCompletion {
  const choices = outs.map((out, i) => ({ ...(completionOf(input, model, out).choices[0] as ChatCompletion['choices'][number]), index: i }));
  const promptTokens = outs.reduce((n, o) => n + o.promptTokens, 0);
  const completionTokens = outs.reduce((n, o) => n + o.completionTokens, 0);
  return {
    ...completionOf(input, model, outs[0] as InferOutput),
    choices,
    usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
  };
}

/** Runs every prompt of `input.prompts` (two or more) to its end; see the top of this file. */
export async function runCompletionPrompts(input: CompletionRequestInput & { prompts: string[] }, hooks: PipelineHooks): Promise<ChatCompletion> {
  const { prompts } = input;
  const step = hooks.onStep ?? (() => undefined);
  const served: InferOutput[] = [];
  let costBefore = 0;
  let overrides: Admission['assignment']['overrides'] = {};
  return runOverDeployments<GenerateParams, InferOutput, ChatCompletion>({
    request: input,
    hooks,
    usageStep: promptUsageStep(0),
    parts: { count: prompts.length, step: promptUsageStep },
    admit: (steps) => steps.admit({ ...chatAdmitInput(input), generations: prompts.length }),
    prepare: (admission) => {
      overrides = admission.assignment.overrides;
      return generateParamsOf(input, admission);
    },
    attempt: (deployment, params, _ctx, part) => inferOnPool(deployment)({
      requestId: input.requestId, tenantId: input.tenantId, deployment, params,
      messages: applyPromptOverride([{ role: 'user', content: prompts[part] ?? '' }], overrides, true),
    }),
    succeed: async (deployment, out, { steps, model, variant, recordConsumed }, part) => {
      step('running', 'settle');
      const spent = spentOnRetries(out);
      if (spent !== null) await recordConsumed('failed', deployment, spent);
      served.push(out);
      // The prompt's usage row is a chat attempt's, under the prompt's own step.
      const usage: UsageEntry = { ...chatCompletionOf(input, deployment, out, { model, variant }).complete.settle, step: promptUsageStep(part) };
      const completion = completionOfPrompts(input, model, served);
      const outcome = part < prompts.length - 1 ? null : {
        requestId: input.requestId, tenantId: input.tenantId, keyId: input.keyId, kind: input.kind, model,
        status: 'succeeded' as const, result: completion, error: null,
        summary: {
          deployment: deployment.id, pool: deployment.pool, variant, prompts: prompts.length,
          prompt_tokens: completion.usage.prompt_tokens, completion_tokens: completion.usage.completion_tokens,
        },
      };
      const { costMicros } = await steps.completePrompt({ settle: usage, prompt: part, outcome, costBefore });
      costBefore += costMicros;
      return completion;
    },
  });
}
