/**
 * `chatRequest`: one sync or async LLM request, durable end to end, in its own workflow
 * `chat-<requestId>` (the pipeline itself is `runChatPipeline`, shared with batch lines).
 * Ops see its progress in the search attributes (status, and model, pool and variant per
 * inference attempt) and in the `status` query.
 */
import { defineQuery, setHandler } from '@temporalio/workflow';
import { runChatPipeline } from './pipeline.js';
import { requestWorkflowHooks } from './request-workflow.js';
import type { ChatCompletion, ChatRequestInput, JobStatus } from '../contracts/chat.js';

export const statusQuery = defineQuery<{ status: JobStatus; step: string }>('status');

export async function chatRequest(input: ChatRequestInput): Promise<ChatCompletion> {
  let state: { status: JobStatus; step: string } = { status: 'queued', step: 'authorize' };
  setHandler(statusQuery, () => state);
  return runChatPipeline(input, {
    ...requestWorkflowHooks(),
    onStep: (status, step) => {
      state = { status, step };
    },
  });
}
