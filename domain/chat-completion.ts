/**
 * The chat completion a served inference attempt answers: built by the request pipeline (the
 * workflow records it as the request's result) and by the API when it answers a sync request as
 * soon as the attempt's output is in the workflow's history (`api/answer.ts`), so both are the
 * same object. Pure.
 */
import type { ChatCompletion, ChatRequestInput, InferOutput } from '../contracts/chat.js';

/** The assistant message of an attempt's output: with its tool calls when it made some (`content` null when it said nothing else). */
function messageOf(out: InferOutput): ChatCompletion['choices'][number]['message'] {
  if (out.toolCalls === undefined || out.toolCalls.length === 0) return { role: 'assistant', content: out.content, refusal: null };
  return { role: 'assistant', content: out.content === '' ? null : out.content, refusal: null, tool_calls: out.toolCalls };
}

/** The completion of `request` served by one attempt's output (choice 0) of `model` (the request's final model: an experiment variant's, if any). */
export function completionOf(request: Pick<ChatRequestInput, 'requestId' | 'created'>, model: string, out: InferOutput): ChatCompletion {
  return {
    id: `chatcmpl-${request.requestId}`,
    object: 'chat.completion',
    created: request.created,
    model,
    system_fingerprint: null,
    choices: [{ index: 0, message: messageOf(out), logprobs: out.logprobs ? { content: out.logprobs, refusal: null } : null, finish_reason: out.finishReason }],
    usage: { prompt_tokens: out.promptTokens, completion_tokens: out.completionTokens, total_tokens: out.promptTokens + out.completionTokens },
  };
}
