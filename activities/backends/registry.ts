/**
 * The inference worker's backends, one per deployment, created on first use and kept: a GGUF is
 * loaded once per process. Deployments arrive with each activity (from the database via the
 * workflow), so a worker serves whatever its pool is given without a restart.
 */
import path from 'node:path';
import type { DeploymentTarget } from '../../contracts/chat.js';
import { BackendError, type EmbedRequest, type EmbedResult, type GenerateResult, type InferenceBackend } from './types.js';
import { MAX_EMBEDDING_VALUES } from '../../contracts/embeddings.js';
import { createInstantBackend, instantChunkInterval } from './instant.js';
import { UpstreamAddressError, checkUpstreamUrl, lookupAll, type LookupAll } from './upstream-address.js';
import type { Llama } from 'node-llama-cpp';
import { inSpan } from '../../runtime/tracing.js';

export interface BackendRegistryOptions {
  /** Relative GGUF paths resolve against `<dataDir>/models`. */
  dataDir: string;
  /** Parallel sequences per llama.cpp model. */
  slots: number;
  /** llama.cpp threads. */
  threads: number;
  /** Per-sequence context size of llama.cpp models. */
  contextSize: number;
  gpu: 'auto' | false;
  /** llama.cpp decode steps wait for every generating sequence (`SLUICE_LLAMA_FULL_STEPS`). @default false */
  fullSteps?: boolean;
  /** Secrets for openai-compatible deployments, by `api_key_ref`. */
  upstreamKeys: Readonly<Record<string, string>>;
  /**
   * Upstream hosts or addresses allowed although they are loopback, private or link-local
   * (`*` = all). @default [] (see `SLUICE_ALLOW_PRIVATE_UPSTREAMS`)
   */
  allowPrivateUpstreams?: readonly string[];
  /** Resolves upstream host names. @default dns.lookup with all: true */
  lookup?: LookupAll;
  /** Largest upstream response body read. @default DEFAULT_MAX_RESPONSE_BYTES (4 MiB; `SLUICE_UPSTREAM_MAX_RESPONSE_BYTES`) */
  maxResponseBytes?: number;
  /**
   * Serve `instant` deployments (a fake that answers "ok", for benchmarks and pipeline tests).
   * @default false (`SLUICE_ENABLE_INSTANT_BACKEND`; production never sets it)
   */
  enableInstantBackend?: boolean;
}

/**
 * Largest completion a backend may return, in bytes of its JSON-encoded text. The completion travels
 * as a Temporal payload (the activity result, the workflow result), and Temporal refuses payloads
 * over 2 MB: an attempt whose result is refused would be retried, buying the same completion again.
 * Half the limit leaves room for the rest of the result and the payload codec's overhead.
 */
export const MAX_COMPLETION_BYTES = 1024 * 1024;

/**
 * Fails a result whose completion is over {@link MAX_COMPLETION_BYTES} as `too_large` (not retried,
 * no fallback), reporting the tokens it spent so they are recorded as unbilled usage.
 */
export function checkCompletionSize(result: GenerateResult): GenerateResult {
  const bytes = Buffer.byteLength(JSON.stringify(result.content));
  if (bytes > MAX_COMPLETION_BYTES) {
    throw new BackendError('too_large', `completion of ${bytes} bytes exceeds the ${MAX_COMPLETION_BYTES}-byte limit`, null, null, {
      promptTokens: result.promptTokens, completionTokens: result.completionTokens,
    });
  }
  return result;
}

/**
 * Refuses an upstream on a non-public address before each call (DNS answers change between
 * deployment creation and use): a refused target can never succeed, so `bad_request`.
 */
async function guardUpstream(baseUrl: string, allow: readonly string[], lookup: LookupAll): Promise<void> {
  try {
    await checkUpstreamUrl(baseUrl, allow, lookup);
  } catch (err) {
    if (!(err instanceof UpstreamAddressError)) throw err;
    if (err.reason === 'unresolvable') throw new BackendError('unavailable', err.message);
    throw new BackendError('bad_request', `upstream refused: ${err.message}`);
  }
}

export interface BackendRegistry {
  get(target: DeploymentTarget): Promise<InferenceBackend>;
  close(): Promise<void>;
}

function cacheKey(t: DeploymentTarget): string {
  return JSON.stringify([t.id, t.provider, t.ggufPath, t.baseUrl, t.apiKeyRef, t.upstreamModel]);
}

/** Wraps a backend so that no result over {@link MAX_COMPLETION_BYTES} leaves it. */
function sizeChecked(backend: InferenceBackend): InferenceBackend {
  const embed = backend.embed?.bind(backend);
  return {
    generate: async (request) => checkCompletionSize(await backend.generate(request)),
    ...(embed ? { embed: async (request: EmbedRequest) => checkEmbeddingSize(await embed(request)) } : {}),
    close: () => backend.close(),
  };
}

/**
 * Fails embeddings of more than {@link MAX_EMBEDDING_VALUES} values as `too_large` (their prompt
 * tokens recorded unbilled): like a completion, the vectors travel as a Temporal payload.
 */
export function checkEmbeddingSize(result: EmbedResult): EmbedResult {
  const values = result.vectors.reduce((n, v) => n + v.length, 0);
  if (values > MAX_EMBEDDING_VALUES) {
    throw new BackendError('too_large', `embeddings of ${values} values exceed the ${MAX_EMBEDDING_VALUES}-value limit of one request`, null, null, {
      promptTokens: result.promptTokens, completionTokens: 0,
    });
  }
  return result;
}

/**
 * Wraps a backend so that each call is a span (`backend.generate`, `backend.embed`) under the
 * activity's, with the deployment, its pool and provider, the model and the token counts: never
 * the messages, the completion or the upstream's key. With tracing off the span is a no-op.
 */
function traced(backend: InferenceBackend, t: DeploymentTarget): InferenceBackend {
  const embed = backend.embed?.bind(backend);
  const attributes = { 'sluice.deployment': t.id, 'sluice.provider': t.provider, 'sluice.pool': t.pool, 'sluice.model': t.model };
  return {
    generate: (request) => inSpan('backend.generate', { ...attributes, 'gen_ai.request.max_tokens': request.params.maxTokens }, async (span) => {
      const result = await backend.generate(request);
      span.setAttributes({ 'gen_ai.usage.input_tokens': result.promptTokens, 'gen_ai.usage.output_tokens': result.completionTokens, 'gen_ai.response.finish_reason': result.finishReason });
      return result;
    }),
    ...(embed ? {
      embed: (request: EmbedRequest) => inSpan('backend.embed', { ...attributes, 'sluice.inputs': request.inputs.length }, async (span) => {
        const result = await embed(request);
        span.setAttribute('gen_ai.usage.input_tokens', result.promptTokens);
        return result;
      }),
    } : {}),
    close: () => backend.close(),
  };
}

export function createBackendRegistry(options: BackendRegistryOptions): BackendRegistry {
  const backends = new Map<string, Promise<InferenceBackend>>();
  // One llama.cpp runtime per process, shared by every GGUF this worker serves.
  let llama: Promise<Llama> | null = null;
  const sharedLlama = () => {
    llama ??= import('node-llama-cpp').then(({ getLlama, LlamaLogLevel }) => getLlama({ build: 'never', gpu: options.gpu, logLevel: LlamaLogLevel.error }));
    return llama;
  };

  async function create(t: DeploymentTarget): Promise<InferenceBackend> {
    switch (t.provider) {
      case 'instant':
        // A test double: never served unless the operator turned it on (the API refuses it too).
        if (!options.enableInstantBackend) throw new BackendError('bad_request', `deployment ${t.id}: the instant backend is disabled (SLUICE_ENABLE_INSTANT_BACKEND)`);
        return createInstantBackend({ chunkIntervalMs: instantChunkInterval(t.upstreamModel) });
      case 'llama-cpp': {
        if (!t.ggufPath) throw new BackendError('bad_request', `deployment ${t.id} has no gguf_path`);
        const { createLlamaCppBackend } = await import('./llama-cpp.js');
        return createLlamaCppBackend({
          modelPath: path.resolve(options.dataDir, 'models', t.ggufPath),
          slots: options.slots,
          threads: options.threads,
          contextSize: options.contextSize,
          gpu: options.gpu,
          fullSteps: options.fullSteps ?? false,
          llama: await sharedLlama(),
        });
      }
      case 'openai-compatible': {
        if (!t.baseUrl || !t.upstreamModel) throw new BackendError('bad_request', `deployment ${t.id} needs base_url and upstream_model`);
        const apiKey = t.apiKeyRef === null ? null : options.upstreamKeys[t.apiKeyRef] ?? null;
        if (t.apiKeyRef !== null && apiKey === null) {
          throw new BackendError('unavailable', `deployment ${t.id}: SLUICE_UPSTREAM_KEY_${t.apiKeyRef} is not set on this worker`);
        }
        const baseUrl = t.baseUrl;
        const allow = options.allowPrivateUpstreams ?? [];
        const lookup = options.lookup ?? lookupAll;
        await guardUpstream(baseUrl, allow, lookup);
        const { createOpenAICompatibleBackend } = await import('./openai-compatible.js');
        const backend = createOpenAICompatibleBackend({
          baseURL: baseUrl, apiKey, model: t.upstreamModel, allowPrivateHosts: allow,
          ...(options.maxResponseBytes !== undefined ? { maxResponseBytes: options.maxResponseBytes } : {}),
        });
        return {
          async generate(request) {
            await guardUpstream(baseUrl, allow, lookup);
            return backend.generate(request);
          },
          async embed(request) {
            await guardUpstream(baseUrl, allow, lookup);
            if (!backend.embed) throw new BackendError('bad_request', `deployment ${t.id} does not serve embeddings`);
            return backend.embed(request);
          },
          close: () => backend.close(),
        };
      }
    }
  }

  return {
    get(target) {
      const key = cacheKey(target);
      let backend = backends.get(key);
      if (!backend) {
        backend = create(target).then((b) => traced(sizeChecked(b), target));
        backends.set(key, backend);
        // A failed load is not cached: the next attempt tries again.
        backend.catch(() => backends.delete(key));
      }
      return backend;
    },
    async close() {
      const all = [...backends.values()];
      backends.clear();
      await Promise.allSettled(all.map(async (b) => (await b).close()));
      if (llama) await (await llama).dispose();
      llama = null;
    },
  };
}
