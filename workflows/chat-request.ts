/**
 * `chatRequest`: one sync or async LLM request, durable end to end, in its own workflow
 * `chat-<requestId>` (the pipeline itself is `runChatPipeline`, shared with batch lines).
 * Ops see its progress in the search attributes (status, and model, pool and variant per
 * inference attempt) and in the `status` query.
 */
import { defineQuery, setHandler, upsertSearchAttributes } from '@temporalio/workflow';
import { runChatPipeline } from './pipeline.js';
import type { ChatCompletion, ChatRequestInput, JobStatus } from '../contracts/chat.js';
import { SearchAttributes } from '../contracts/ids.js';

export const statusQuery = defineQuery<{ status: JobStatus; step: string }>('status');

export async function chatRequest(input: ChatRequestInput): Promise<ChatCompletion> {
  let state: { status: JobStatus; step: string } = { status: 'queued', step: 'authorize' };
  setHandler(statusQuery, () => state);
  return runChatPipeline(input, {
    // Measured faster than regular activities (BENCHMARKS.md, "Sluice's pipeline").
    localActivities: true,
    onStep: (status, step) => {
      state = { status, step };
    },
    // One upsert per attempt (each is a history event and a visibility write).
    onAttempt: ({ model, pool, variant }) => upsertSearchAttributes([
      { key: SearchAttributes.variant, value: variant ?? 'none' },
      { key: SearchAttributes.model, value: model },
      { key: SearchAttributes.pool, value: pool },
      { key: SearchAttributes.status, value: 'running' },
    ]),
    onEnd: (status) => upsertSearchAttributes([{ key: SearchAttributes.status, value: status }]),
  });
}
