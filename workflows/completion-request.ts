/**
 * `completionRequest`: one legacy text completion (`/v1/completions`), its own workflow kind in
 * `completion-<requestId>`, through the same request pipeline as a chat request (authorized,
 * reserved, billed and audited alike); the prompt travels as one raw user message
 * (`params.rawPrompt`), continued by the model without a chat template. Several prompts
 * (`input.prompts`) run under the one admission, in order (`completion-prompts.ts`). With `echo`
 * the result carries the prompts, so the job routes answer what the sync route did (the request
 * row keeps the completion only). The API turns the result into a `text_completion`.
 */
import { runChatPipeline } from './pipeline.js';
import { requestWorkflowHooks } from './request-workflow.js';
import { runCompletionPrompts } from './completion-prompts.js';
import type { CompletionRequestInput, CompletionResult } from '../contracts/completions.js';

export async function completionRequest(input: CompletionRequestInput): Promise<CompletionResult> {
  // Decided by the input alone: histories recorded before several prompts have none and run as they did.
  const { prompts } = input;
  const completion = prompts !== undefined && prompts.length > 1
    ? await runCompletionPrompts({ ...input, prompts }, requestWorkflowHooks())
    : await runChatPipeline(input, requestWorkflowHooks());
  if (input.echo !== true) return completion;
  return { ...completion, echo: prompts ?? input.messages.map((m) => m.content).slice(0, 1) };
}
