/** The upstream chat completion body built from a resolved Sluice request. */
import type { ChatCompletionCreateParamsNonStreaming, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { BackendError } from '../types.js';
import type { ChatMessage, GenerateParams } from '../types.js';

/**
 * Translates a resolved request into a non-streaming chat completion body.
 * `max_tokens` (not `max_completion_tokens`) because every OpenAI-compatible server accepts it.
 */
export function buildRequestBody(
  model: string,
  messages: readonly ChatMessage[],
  params: GenerateParams,
): ChatCompletionCreateParamsNonStreaming {
  return {
    model,
    messages: messages.map(toUpstreamMessage),
    max_tokens: params.maxTokens,
    temperature: params.temperature,
    ...(params.topP !== null ? { top_p: params.topP } : {}),
    ...(params.seed !== null ? { seed: params.seed } : {}),
    ...(params.stop !== null ? { stop: params.stop } : {}),
    // Validated options under their OpenAI names (domain/chat-extras.ts), passed on unchanged.
    ...params.extras,
  };
}

/**
 * Maps one Sluice message to the upstream's shape.
 * `developer` becomes `system`, which every compatible server understands and OpenAI treats as
 * developer instructions on models that distinguish them. An assistant's `tool_calls` and a tool
 * message's `tool_call_id` pass unchanged (an assistant message that only calls tools has `content:
 * null`, as the client sent it). A `tool` message without a `tool_call_id` (recorded before tools
 * were validated) is refused before any paid call: the upstream requires one.
 */
function toUpstreamMessage(message: ChatMessage): ChatCompletionMessageParam {
  switch (message.role) {
    case 'system':
    case 'developer':
      return { role: 'system', content: message.content };
    case 'user':
      return { role: 'user', content: message.content };
    case 'assistant':
      if (message.tool_calls !== undefined) return { role: 'assistant', content: message.content === '' ? null : message.content, tool_calls: message.tool_calls };
      return { role: 'assistant', content: message.content };
    case 'tool':
      if (message.tool_call_id === undefined) throw new BackendError('bad_request', 'a tool message needs a tool_call_id on OpenAI-compatible deployments');
      return { role: 'tool', tool_call_id: message.tool_call_id, content: message.content };
  }
}
