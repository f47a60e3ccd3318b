/**
 * `chatRequest`: one sync or async LLM request, durable end to end, in its own workflow
 * `chat-<requestId>` (the pipeline itself is `runChatPipeline`, shared with batch lines).
 * Ops see its progress in the search attributes (status, and model, pool and variant per
 * inference attempt) and in the `status` query. Its result carries the cache status the API
 * answers in `x-sluice-cache` (no read of the request's row after the result).
 */
import { defineQuery, setHandler } from '@temporalio/workflow';
import { runChatPipeline } from './pipeline.js';
import { requestWorkflowHooks } from './request-workflow.js';
import type { CacheStatus, ChatRequestInput, JobStatus, RequestResult } from '../contracts/chat.js';

export const statusQuery = defineQuery<{ status: JobStatus; step: string }>('status');

export async function chatRequest(input: ChatRequestInput): Promise<RequestResult> {
  let state: { status: JobStatus; step: string } = { status: 'queued', step: 'authorize' };
  let cache: CacheStatus = null;
  setHandler(statusQuery, () => state);
  const completion = await runChatPipeline(input, {
    ...requestWorkflowHooks(),
    onStep: (status, step) => {
      state = { status, step };
    },
    onCacheLookup: (status) => {
      cache = status;
    },
  });
  return { completion, cache };
}
