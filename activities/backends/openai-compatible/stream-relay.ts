/** The streaming SSE relay: a streamed upstream chat completion, each content delta relayed as it arrives. */
import type OpenAI from 'openai';
import type { ChatCompletion } from 'openai/resources/chat/completions';
import { estimatePromptTokens } from '../../../domain/chat-validation.js';
import { BackendError } from '../types.js';
import type { GenerateRequest, GenerateResult } from '../types.js';
import type { OpenAICompatibleBackendOptions } from './options.js';
import { buildRequestBody } from './request-body.js';
import { clampUsage, isTokenCount, readUsage } from './usage.js';
import { upstreamFinishReason } from './generate-result.js';
import { createToolCallAssembler, malformedToolCalls, readUpstreamToolCalls } from './tool-calls.js';
import { toBackendError } from './upstream-errors.js';

/**
 * A streamed request: the upstream is asked to stream (`stream: true`, and its usage with
 * `stream_options.include_usage`, since the usage is billed) and each content delta is relayed as
 * it arrives; tool-call deltas are assembled and checked at the end (the API sends the calls to its
 * client from the completion). Usage is read and clamped as for a non-streamed call; a stream that ends without it
 * fails as `unavailable`. A failure before the first delta is retried or falls back like any other
 * (the client saw nothing); after it, the inference activity ends the stream (StreamInterrupted).
 */
export async function generateStreamed(client: OpenAI, options: OpenAICompatibleBackendOptions, request: GenerateRequest, onDelta: (text: string) => void): Promise<GenerateResult> {
  const body = { ...buildRequestBody(options.model, request.messages, request.params), stream: true as const, stream_options: { include_usage: true } };
  const bounds = { maxPromptTokens: estimatePromptTokens(request.messages, request.params.extras?.tools), maxCompletionTokens: request.params.maxTokens };
  let content = '';
  let usage: ChatCompletion['usage'] | undefined;
  let sawChoice = false;
  let upstreamFinish: unknown = null;
  const calls = createToolCallAssembler();
  try {
    const stream = await client.chat.completions.create(body, { signal: request.signal });
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices?.[0];
      if (!choice) continue;
      sawChoice = true;
      const delta = choice.delta?.content;
      if (typeof delta === 'string' && delta !== '') {
        content += delta;
        onDelta(delta);
      }
      calls.push((choice.delta as { tool_calls?: unknown } | undefined)?.tool_calls);
      if (choice.finish_reason) upstreamFinish = choice.finish_reason;
    }
  } catch (error) {
    throw toBackendError(error, request.signal, options.apiKey);
  }
  if (!sawChoice) {
    const { prompt_tokens: promptTokens, completion_tokens: completionTokens } = usage ?? {};
    const consumed = isTokenCount(promptTokens) && isTokenCount(completionTokens) ? clampUsage({ promptTokens, completionTokens }, bounds) : null;
    throw new BackendError('unavailable', 'upstream stream carried no choices', null, null, consumed);
  }
  const counts = clampUsage(readUsage(usage), bounds);
  const assembled = calls.result();
  if (!assembled.ok) throw malformedToolCalls(assembled.why, counts);
  const toolCalls = readUpstreamToolCalls(assembled.calls, request.params.extras?.tools, counts);
  request.onProgress?.(counts.completionTokens, counts.promptTokens);
  return { content, ...(toolCalls !== undefined ? { toolCalls } : {}), finishReason: upstreamFinishReason(upstreamFinish, toolCalls), ...counts };
}
