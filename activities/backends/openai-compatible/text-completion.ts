/**
 * A legacy text completion (`/v1/completions`, `params.rawPrompt`) passed through to the upstream's
 * own `/completions`: the one user message is the prompt, continued by the upstream as it continues
 * prompts; sampling values and the validated extras (penalties, `logit_bias`) under their OpenAI
 * names. Usage is read and clamped as for chat (`usage.ts`).
 */
import type OpenAI from 'openai';
import type { Completion, CompletionCreateParamsNonStreaming } from 'openai/resources/completions';
import { estimatePromptTokens } from '../../../domain/chat-validation.js';
import { BackendError, type GenerateRequest, type GenerateResult } from '../types.js';
import { clampUsage, noChoicesError, readUsage } from './usage.js';
import { toBackendError } from './upstream-errors.js';

/** The extras a text completion carries (domain/completion-validation.ts). */
const TEXT_EXTRAS = ['presence_penalty', 'frequency_penalty', 'logit_bias'] as const;

/** Sends the request's raw prompt to the upstream's `/completions` and reads the first choice. */
export async function generateTextCompletion(client: OpenAI, model: string, apiKey: string | null, request: GenerateRequest): Promise<GenerateResult> {
  const [only, ...rest] = request.messages;
  if (only === undefined || rest.length > 0 || only.role !== 'user') throw new BackendError('bad_request', 'a text completion carries exactly one prompt');
  const extras = request.params.extras ?? {};
  const unknown = Object.keys(extras).find((k) => !(TEXT_EXTRAS as readonly string[]).includes(k));
  if (unknown !== undefined) throw new BackendError('bad_request', `'${unknown}' is not a text completion option`);
  const body: CompletionCreateParamsNonStreaming = {
    model,
    prompt: only.content,
    max_tokens: request.params.maxTokens,
    temperature: request.params.temperature,
    ...(request.params.topP !== null ? { top_p: request.params.topP } : {}),
    ...(request.params.seed !== null ? { seed: request.params.seed } : {}),
    ...(request.params.stop !== null ? { stop: request.params.stop } : {}),
    ...(extras.presence_penalty !== undefined ? { presence_penalty: extras.presence_penalty } : {}),
    ...(extras.frequency_penalty !== undefined ? { frequency_penalty: extras.frequency_penalty } : {}),
    ...(extras.logit_bias !== undefined ? { logit_bias: extras.logit_bias } : {}),
  };
  let completion: Completion;
  try {
    completion = await client.completions.create(body, { signal: request.signal });
  } catch (error) {
    throw toBackendError(error, request.signal, apiKey);
  }
  const bounds = { maxPromptTokens: estimatePromptTokens(request.messages), maxCompletionTokens: request.params.maxTokens };
  const choice = completion.choices?.[0];
  if (!choice) throw noChoicesError(completion.usage, bounds);
  const usage = clampUsage(readUsage(completion.usage), bounds);
  const result: GenerateResult = { content: typeof choice.text === 'string' ? choice.text : '', finishReason: choice.finish_reason === 'length' ? 'length' : 'stop', ...usage };
  request.onProgress?.(result.completionTokens, result.promptTokens);
  return result;
}
