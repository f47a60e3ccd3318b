/** An upstream's embeddings answer checked and read into an {@link EmbedResult}. */
import type { CreateEmbeddingResponse } from 'openai/resources/embeddings';
import { base64ToVector } from '../../../domain/embedding-vectors.js';
import { MAX_EMBEDDING_VALUES } from '../../../contracts/embeddings.js';
import { BackendError } from '../types.js';
import type { EmbedResult } from '../types.js';
import { isTokenCount } from './usage.js';

/** One upstream vector: base64 float32 (as asked) or, from servers that ignore the format, numbers. */
function upstreamVector(raw: unknown): Float32Array | null {
  if (typeof raw === 'string') return base64ToVector(raw);
  if (Array.isArray(raw) && raw.every((v) => typeof v === 'number' && Number.isFinite(v))) return Float32Array.from(raw as number[]);
  return null;
}

/**
 * Checks an upstream's embeddings answer: one vector per input (by `index`), all of the same
 * length (`dimensions` when asked), finite values, at most {@link MAX_EMBEDDING_VALUES} in all,
 * and valid usage (clamped to the reservation's estimate, as chat usage is). Anything else is the
 * deployment's fault (`unavailable`), except a result too large to carry (`too_large`).
 */
export function toEmbedResult(response: CreateEmbeddingResponse, count: number, dimensions: number | null, maxPromptTokens: number): EmbedResult {
  const promptTokens = response.usage?.prompt_tokens;
  if (!isTokenCount(promptTokens)) throw new BackendError('unavailable', 'upstream embeddings response carried no valid usage (prompt_tokens)');
  const spent = { promptTokens: Math.min(promptTokens, Math.max(0, maxPromptTokens)), completionTokens: 0 };
  const data: unknown = response.data;
  if (!Array.isArray(data) || data.length !== count) {
    throw new BackendError('unavailable', `upstream returned ${Array.isArray(data) ? data.length : 'no'} embeddings for ${count} inputs`, null, null, spent);
  }
  const vectors: Array<Float32Array | undefined> = new Array<Float32Array | undefined>(count);
  let total = 0;
  let width: number | null = dimensions;
  for (const item of data as Array<{ index?: unknown; embedding?: unknown }>) {
    const index = item?.index;
    const vector = upstreamVector(item?.embedding);
    if (typeof index !== 'number' || !Number.isSafeInteger(index) || index < 0 || index >= count || vectors[index] !== undefined || vector === null
      || vector.some((v) => !Number.isFinite(v)) || vector.length === 0
      || vector.length !== (width ?? vector.length)) {
      throw new BackendError('unavailable', 'upstream returned a malformed embeddings list', null, null, spent);
    }
    width = vector.length;
    total += vector.length;
    if (total > MAX_EMBEDDING_VALUES) throw new BackendError('too_large', `embeddings of more than ${MAX_EMBEDDING_VALUES} values do not fit a result`, null, null, spent);
    vectors[index] = vector;
  }
  return { vectors: vectors as Float32Array[], promptTokens: spent.promptTokens };
}
