/** Token counts from an upstream's `usage`: read strictly (they are billed) and clamped to the reservation. */
import type { ChatCompletion } from 'openai/resources/chat/completions';
import { BackendError, type ConsumedTokens } from '../types.js';
import type { GenerateResult } from '../types.js';

/** The most a request may be billed for: what its reservation held. */
export interface UsageBounds {
  /** The reservation's prompt estimate (one token per byte of the messages, roles and separators). */
  maxPromptTokens: number;
  /** The request's `max_tokens`, as sent to the upstream. */
  maxCompletionTokens: number;
}

/**
 * Clamps an upstream's reported usage to what the request reserved: completion tokens never above
 * `max_tokens` (an upstream cannot generate more than it was asked for), prompt tokens never above
 * the reservation's estimate (an upper bound for any tokenizer: one token per byte, plus the
 * roles and separators). An upstream reporting more is wrong or hostile; the tenant is billed the
 * bound (docs/billing.md).
 */
export function clampUsage(usage: ConsumedTokens, bounds: UsageBounds): ConsumedTokens {
  return {
    promptTokens: Math.min(usage.promptTokens, Math.max(0, bounds.maxPromptTokens)),
    completionTokens: Math.min(usage.completionTokens, Math.max(0, bounds.maxCompletionTokens)),
  };
}

/**
 * Takes token counts from the upstream's `usage`. Counts are never estimated (they are billed), so
 * missing or malformed usage fails the call as `unavailable`: it is the deployment's fault, not
 * the caller's (so not `bad_request`); a retry may reach a healthy replica, and a deployment that
 * never reports usage trips its circuit breaker and the fallback chain takes over instead of
 * serving unbilled completions.
 */
export function readUsage(usage: ChatCompletion['usage']): Pick<GenerateResult, 'promptTokens' | 'completionTokens'> {
  const promptTokens = usage?.prompt_tokens;
  const completionTokens = usage?.completion_tokens;
  if (!isTokenCount(promptTokens) || !isTokenCount(completionTokens)) {
    throw new BackendError('unavailable', 'upstream response carried no valid usage (prompt_tokens, completion_tokens)');
  }
  return { promptTokens, completionTokens };
}

/** True for a non-negative integer. */
export function isTokenCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * The failure of an upstream answer without choices. The upstream may still have spent (and
 * charged for) tokens: the error says how many when its usage reports them.
 */
export function noChoicesError(usage: { prompt_tokens?: unknown; completion_tokens?: unknown } | null | undefined, bounds: UsageBounds): BackendError {
  const { prompt_tokens: promptTokens, completion_tokens: completionTokens } = usage ?? {};
  const consumed = isTokenCount(promptTokens) && isTokenCount(completionTokens) ? clampUsage({ promptTokens, completionTokens }, bounds) : null;
  return new BackendError('unavailable', 'upstream returned no choices', null, null, consumed);
}
