/**
 * Embeddings on the llama.cpp backend: one embedding context per model (node-llama-cpp's
 * `model.createEmbeddingContext`, its own KV cache, `threads` set explicitly), created on the first
 * embeddings request so a chat-only deployment never pays for it. node-llama-cpp evaluates one
 * input at a time on it (its own lock), so a request's inputs run in order and requests take turns.
 *
 * Hostile input stops here: token IDs outside the model's vocabulary (llama.cpp would read out of
 * bounds) are `bad_request`; an input longer than the context is `context_length`; a cancelled
 * request stops between inputs.
 */
import type { LlamaEmbeddingContext, LlamaModel, Token } from 'node-llama-cpp';
import { BackendError, InvalidEmbeddingInput, type EmbedRequest, type EmbedResult } from '../types.js';
import { faultGuard } from './fault-guard.js';

export interface EmbedderOptions {
  /** Tokens one input may occupy (llama.cpp's context of the embedding context). */
  contextSize: number;
  /** CPU threads of the embedding context (always set: see LlamaCppBackendOptions.threads). */
  threads: number;
}

/** Tokens in the model's vocabulary, from its GGUF metadata (null when the file does not say). */
function vocabularySize(model: LlamaModel): number | null {
  const metadata = model.fileInfo.metadata as unknown as {
    tokenizer?: { ggml?: { tokens?: unknown } };
    llama?: { vocab_size?: unknown };
  };
  const tokens = metadata.tokenizer?.ggml?.tokens;
  if (Array.isArray(tokens) && tokens.length > 0) return tokens.length;
  const declared = metadata.llama?.vocab_size;
  return typeof declared === 'number' && Number.isSafeInteger(declared) && declared > 0 ? declared : null;
}

/** `vector` cut to its first `dimensions` values and scaled back to unit length (OpenAI's `dimensions`). */
export function shortened(vector: Float32Array, dimensions: number): Float32Array {
  const out = vector.slice(0, dimensions);
  let norm = 0;
  for (const v of out) norm += v * v;
  norm = Math.sqrt(norm);
  if (norm > 0) for (let i = 0; i < out.length; i++) out[i] = (out[i] ?? 0) / norm;
  return out;
}

export interface Embedder {
  embed(request: EmbedRequest): Promise<EmbedResult>;
  dispose(): Promise<void>;
}

export function createEmbedder(model: LlamaModel, options: EmbedderOptions): Embedder {
  let context: Promise<LlamaEmbeddingContext> | null = null;
  const vocab = vocabularySize(model);
  const open = () => {
    context ??= model.createEmbeddingContext({ contextSize: options.contextSize, batchSize: options.contextSize, threads: options.threads });
    // A failed creation is not kept: the next request tries again.
    context.catch(() => {
      context = null;
    });
    return context;
  };

  /** The tokens of one input as node-llama-cpp will evaluate them (a fresh array: it prepends BOS in place). */
  function tokensOf(input: string | number[], i: number): Token[] | string {
    if (typeof input === 'string') return input;
    if (vocab === null) throw new InvalidEmbeddingInput('This model does not declare its vocabulary: send text, not token IDs', `input[${i}]`, 'invalid_value');
    for (const t of input) {
      if (!Number.isSafeInteger(t) || t < 0 || t >= vocab) {
        throw new InvalidEmbeddingInput(`input[${i}] has token ID ${t}, outside this model's vocabulary of ${vocab} tokens`, `input[${i}]`, 'invalid_value');
      }
    }
    return [...input] as Token[];
  }

  return {
    async embed(request) {
      let ctx: LlamaEmbeddingContext;
      try {
        ctx = await open();
      } catch (err) {
        throw new BackendError('unavailable', `llama.cpp embedding context failed: ${err instanceof Error ? err.message : String(err)}`);
      }
      const prepared = request.inputs.map((input, i) => tokensOf(input, i));
      let promptTokens = 0;
      for (const [i, input] of prepared.entries()) {
        const length = ctx.calculateInputLength(typeof input === 'string' ? input : [...input]);
        if (length >= options.contextSize) {
          throw new InvalidEmbeddingInput(`input[${i}] has ${length} tokens; this model embeds at most ${options.contextSize - 1} per input`, `input[${i}]`, 'input_too_long');
        }
        promptTokens += length;
      }
      const vectors: Float32Array[] = [];
      for (const input of prepared) {
        request.signal.throwIfAborted();
        const guard = faultGuard.register();
        try {
          const embedding = await Promise.race([ctx.getEmbeddingFor(input), guard.fault]);
          let vector: Float32Array = Float32Array.from(embedding.vector);
          if (request.dimensions !== null) {
            if (request.dimensions > vector.length) {
              throw new InvalidEmbeddingInput(`dimensions ${request.dimensions} is more than this model's ${vector.length}`, 'dimensions', 'invalid_value');
            }
            vector = shortened(vector, request.dimensions);
          }
          vectors.push(vector);
        } catch (err) {
          if (request.signal.aborted || err instanceof BackendError) throw err;
          throw new BackendError('unavailable', `llama.cpp embedding failed: ${err instanceof Error ? err.message : String(err)}`);
        } finally {
          guard.done();
        }
      }
      return { vectors, promptTokens };
    },
    async dispose() {
      const ctx = context;
      context = null;
      if (ctx) await (await ctx.catch(() => null))?.dispose();
    },
  };
}
