/**
 * An inference backend that forwards chat completions, legacy text completions and embeddings to an OpenAI-compatible HTTP upstream
 * (OpenAI itself, vLLM, llama.cpp's server, a hosted provider).
 *
 * The client never retries (`maxRetries: 0`): retries, backoff and `Retry-After` belong to the
 * Temporal retry policy, so every upstream failure is translated into a {@link BackendError} whose
 * kind tells that policy what to do. Nothing here logs: neither the API key nor prompt text can
 * leak through this module, and the client's own logger is switched off so `OPENAI_LOG` cannot
 * turn request logging back on.
 */
import OpenAI from 'openai';
import type { ChatCompletion } from 'openai/resources/chat/completions';
import type { CreateEmbeddingResponse, EmbeddingCreateParams } from 'openai/resources/embeddings';
import { estimatePromptTokens } from '../../domain/chat-validation.js';
import type { InferenceBackend } from './types.js';
import { createPinnedFetch, type PinnedFetch } from './pinned-fetch.js';
import { DEFAULT_MAX_RESPONSE_BYTES, type OpenAICompatibleBackendOptions } from './openai-compatible/options.js';
import { toEmbedResult } from './openai-compatible/embeddings.js';
import { toGenerateResult } from './openai-compatible/generate-result.js';
import { buildRequestBody } from './openai-compatible/request-body.js';
import { generateStreamed } from './openai-compatible/stream-relay.js';
import { generateTextCompletion } from './openai-compatible/text-completion.js';
import { toBackendError } from './openai-compatible/upstream-errors.js';

/** Ten minutes, the `openai` client's own default: a long generation must not look like a failure. */
const DEFAULT_TIMEOUT_MS = 600_000;

/**
 * Creates a backend that serves one deployment from an OpenAI-compatible upstream.
 *
 * Usage accounting: prompt and completion tokens come from the upstream's `usage` object, clamped
 * to what the request reserved ({@link clampUsage}). An upstream that answers without valid usage
 * has broken the contract billing relies on; the call fails as `unavailable` rather than returning
 * invented counts (see {@link readUsage}).
 */
export function createOpenAICompatibleBackend(options: OpenAICompatibleBackendOptions): InferenceBackend {
  const pinned = options.fetch ? null : createPinnedFetch({ allow: options.allowPrivateHosts ?? [], maxResponseBytes: options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES });
  const client = createClient(options, options.fetch ?? (pinned as PinnedFetch).fetch);
  return {
    generate: async (request) => {
      // A legacy text completion: the upstream's own `/completions` continues the raw prompt.
      if (request.params.rawPrompt === true) return generateTextCompletion(client, options.model, options.apiKey, request);
      if (request.onDelta) return generateStreamed(client, options, request, request.onDelta);
      const body = buildRequestBody(options.model, request.messages, request.params);
      let completion: ChatCompletion;
      try {
        completion = await client.chat.completions.create(body, { signal: request.signal });
      } catch (error) {
        throw toBackendError(error, request.signal, options.apiKey);
      }
      const bounds = { maxPromptTokens: estimatePromptTokens(request.messages, request.params.extras?.tools), maxCompletionTokens: request.params.maxTokens };
      const result = toGenerateResult(completion, bounds, request.params.extras?.tools);
      request.onProgress?.(result.completionTokens, result.promptTokens);
      return result;
    },
    embed: async (request) => {
      const body: EmbeddingCreateParams = {
        model: options.model,
        // All strings or all token arrays (domain/embeddings-validation.ts), as the upstream requires.
        input: request.inputs as string[] | number[][],
        encoding_format: 'base64',
        ...(request.dimensions !== null ? { dimensions: request.dimensions } : {}),
      };
      let response: CreateEmbeddingResponse;
      try {
        response = await client.embeddings.create(body, { signal: request.signal });
      } catch (error) {
        throw toBackendError(error, request.signal, options.apiKey);
      }
      return toEmbedResult(response, request.inputs.length, request.dimensions, request.maxPromptTokens);
    },
    close: async () => {
      pinned?.close();
    },
  };
}

/**
 * Builds the `openai` client with every option explicit, so no `OPENAI_*` environment variable
 * (key, organisation, project, base URL, log level) changes what this backend sends or logs.
 */
function createClient(options: OpenAICompatibleBackendOptions, fetchImpl: typeof fetch): OpenAI {
  return new OpenAI({
    baseURL: options.baseURL,
    // The client refuses to start without credentials; a keyless upstream gets a placeholder
    // that the `Authorization: null` default header below strips from every request.
    apiKey: options.apiKey ?? 'no-key',
    adminAPIKey: null,
    organization: null,
    project: null,
    webhookSecret: null,
    maxRetries: 0,
    timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    logLevel: 'off',
    ...(options.apiKey === null ? { defaultHeaders: { Authorization: null } } : {}),
    fetch: fetchImpl,
  });
}
