/** A non-streamed upstream chat completion read into a {@link GenerateResult}: first choice, usage, logprobs. */
import type { ChatCompletion } from 'openai/resources/chat/completions';
import type { FinishReason, TokenLogprob, ToolCall, ToolDefinition } from '../../../contracts/chat.js';
import { readUpstreamToolCalls } from './tool-calls.js';
import { BackendError } from '../types.js';
import type { GenerateResult } from '../types.js';
import { clampUsage, noChoicesError, readUsage, type UsageBounds } from './usage.js';

const MAX_TOKEN_CHARS = 256;

function isLogprobEntry(v: unknown): v is { token: string; logprob: number; bytes?: unknown } {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  return typeof e.token === 'string' && e.token.length <= MAX_TOKEN_CHARS && typeof e.logprob === 'number' && Number.isFinite(e.logprob);
}

function bytesOf(v: unknown): number[] | null {
  return Array.isArray(v) && v.length <= 4 * MAX_TOKEN_CHARS && v.every((b) => Number.isInteger(b) && b >= 0 && b <= 255) ? (v as number[]) : null;
}

/**
 * The upstream's per-token logprobs, re-built field by field (a hostile upstream's extra fields
 * or sizes never reach the history): at most one entry per billed completion token and 20
 * alternatives each; null when it sent none or something else.
 */
function readLogprobs(content: unknown, maxTokens: number): TokenLogprob[] | null {
  if (!Array.isArray(content)) return null;
  return content.slice(0, maxTokens).filter(isLogprobEntry).map((e) => {
    const top = (e as { top_logprobs?: unknown }).top_logprobs;
    return {
      token: e.token, logprob: e.logprob, bytes: bytesOf(e.bytes),
      top_logprobs: (Array.isArray(top) ? top.slice(0, 20).filter(isLogprobEntry) : []).map((t) => ({ token: t.token, logprob: t.logprob, bytes: bytesOf(t.bytes) })),
    };
  });
}

/** The upstream's finish reason as Sluice relays it: `length`, `tool_calls` (when it made calls), else `stop`. */
export function upstreamFinishReason(reason: unknown, toolCalls: readonly ToolCall[] | undefined): FinishReason {
  if (reason === 'length') return 'length';
  if (reason === 'tool_calls' && toolCalls !== undefined) return 'tool_calls';
  return 'stop';
}

/**
 * Reads the first choice, its tool calls (checked against the request's `tools`) and the upstream's
 * usage; a response without a choice or usage, or with malformed calls, is `unavailable`.
 */
export function toGenerateResult(completion: ChatCompletion, bounds: UsageBounds, tools?: readonly ToolDefinition[]): GenerateResult {
  const choice = completion.choices?.[0];
  if (!choice) throw noChoicesError(completion.usage, bounds);
  const usage = clampUsage(readUsage(completion.usage), bounds);
  const logprobs = readLogprobs(choice.logprobs?.content, usage.completionTokens);
  const toolCalls = readUpstreamToolCalls(choice.message?.tool_calls, tools, usage);
  const content = choice.message?.content ?? '';
  if (typeof content !== 'string') throw new BackendError('unavailable', 'upstream returned a non-text message content', null, null, usage);
  return {
    content,
    ...(toolCalls !== undefined ? { toolCalls } : {}),
    finishReason: upstreamFinishReason(choice.finish_reason, toolCalls),
    ...usage,
    ...(logprobs !== null ? { logprobs } : {}),
  };
}
