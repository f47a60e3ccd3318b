/**
 * `completionRequest`: one legacy text completion (`/v1/completions`), its own workflow kind in
 * `completion-<requestId>`, through the same request pipeline as a chat request (authorized,
 * reserved, billed and audited alike); the prompt travels as one raw user message
 * (`params.rawPrompt`), continued by the model without a chat template. The API turns the
 * pipeline's completion into a `text_completion`.
 */
import { runChatPipeline } from './pipeline.js';
import { requestWorkflowHooks } from './request-workflow.js';
import type { ChatCompletion, ChatRequestInput } from '../contracts/chat.js';

export async function completionRequest(input: ChatRequestInput): Promise<ChatCompletion> {
  return runChatPipeline(input, requestWorkflowHooks());
}
