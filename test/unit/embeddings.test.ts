/** The pure parts of `/v1/embeddings`: body validation, the reservation's estimate, the vector codec, IDs. */
import { describe, expect, it } from 'vitest';
import { checkEmbedInputs, embeddingInputs, estimateEmbeddingTokens, validateEmbeddingsBody } from '../../domain/embeddings-validation.js';
import { InvalidRequestError } from '../../domain/invalid-request.js';
import { base64ToNumbers, base64ToVector, vectorToBase64 } from '../../domain/embedding-vectors.js';
import { shortened } from '../../activities/backends/llama-cpp/embedder.js';
import { embeddingsWorkflowId, requestWorkflowId } from '../../contracts/ids.js';

function refusal(fn: () => unknown): { param: string | null; code: string } {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvalidRequestError) return { param: err.param, code: err.code };
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('validateEmbeddingsBody', () => {
  it('takes the four input forms of OpenAI', () => {
    expect(embeddingInputs('a')).toEqual(['a']);
    expect(embeddingInputs(['a', 'b'])).toEqual(['a', 'b']);
    expect(embeddingInputs([1, 2, 3])).toEqual([[1, 2, 3]]);
    expect(embeddingInputs([[1], [2, 3]])).toEqual([[1], [2, 3]]);
  });

  it('defaults encoding_format to float and dimensions and user to null', () => {
    expect(validateEmbeddingsBody({ model: 'm', input: 'x' })).toEqual({ model: 'm', inputs: ['x'], encodingFormat: 'float', dimensions: null, user: null });
    expect(validateEmbeddingsBody({ model: 'm', input: 'x', encoding_format: 'base64', dimensions: 8, user: 'u' }))
      .toMatchObject({ encodingFormat: 'base64', dimensions: 8, user: 'u' });
  });

  it('refuses every unknown field and bad value naming it', () => {
    const cases: Array<[unknown, string | null, string]> = [
      [[], null, 'invalid_type'],
      [{ input: 'x' }, 'model', 'missing_required_parameter'],
      [{ model: 'm' }, 'input', 'missing_required_parameter'],
      [{ model: 'm', input: 'x', stream: true }, 'stream', 'unsupported_parameter'],
      [{ model: 'm', input: 'x', extra_body: {} }, 'extra_body', 'unsupported_parameter'],
      [{ model: 'm', input: '' }, 'input', 'invalid_value'],
      [{ model: 'm', input: [] }, 'input', 'invalid_value'],
      [{ model: 'm', input: [''] }, 'input[0]', 'invalid_value'],
      [{ model: 'm', input: [[]] }, 'input[0]', 'invalid_value'],
      [{ model: 'm', input: [-1] }, 'input', 'invalid_value'],
      [{ model: 'm', input: [[1, 2 ** 31]] }, 'input[0]', 'invalid_value'],
      [{ model: 'm', input: ['a', [1]] }, 'input[1]', 'invalid_type'],
      [{ model: 'm', input: [{}] }, 'input[0]', 'invalid_type'],
      [{ model: 'm', input: Array.from({ length: 2049 }, () => 'x') }, 'input', 'invalid_value'],
      [{ model: 'm', input: 'x', encoding_format: 'int8' }, 'encoding_format', 'invalid_value'],
      [{ model: 'm', input: 'x', dimensions: 0 }, 'dimensions', 'invalid_value'],
      [{ model: 'm', input: 'x', dimensions: 1.5 }, 'dimensions', 'invalid_value'],
      [{ model: 'm', input: 'x', user: 1 }, 'user', 'invalid_value'],
    ];
    for (const [body, param, code] of cases) expect(refusal(() => validateEmbeddingsBody(body)), JSON.stringify(body).slice(0, 80)).toEqual({ param, code });
  });

  it('checks an activity\'s inputs again at the backend boundary', () => {
    expect(checkEmbedInputs(['a'], null)).toBeNull();
    expect(checkEmbedInputs([[1, 2]], 4)).toBeNull();
    expect(checkEmbedInputs('not an array of inputs', null)).toBeNull();
    expect(checkEmbedInputs([''], null)?.param).toBe('input[0]');
    expect(checkEmbedInputs(['a'], -3)?.param).toBe('dimensions');
    expect(checkEmbedInputs(null, null)?.param).toBe('input');
  });

  it('estimates an upper bound of the prompt tokens: bytes (or tokens) plus BOS and EOS per input', () => {
    expect(estimateEmbeddingTokens(['ab', 'é'])).toBe(4 + 4);
    expect(estimateEmbeddingTokens([[1, 2, 3]])).toBe(5);
  });
});

describe('embedding vectors', () => {
  it('round-trips float32 values through base64 exactly', () => {
    const v = Float32Array.from([0, 1, -1, 0.1, 3.4e38, -1.5e-45]);
    expect(base64ToVector(vectorToBase64(v))).toEqual(v);
    expect(base64ToNumbers(vectorToBase64(v))).toEqual(Array.from(v));
  });

  it('refuses base64 that is not whole float32 values', () => {
    expect(base64ToVector('AAA=')).toBeNull();
    expect(base64ToVector('not base64!')).toBeNull();
  });

  it('shortens to the first dimensions as a unit vector', () => {
    const v = shortened(Float32Array.from([3, 4, 12]), 2);
    expect(Array.from(v)).toEqual([Math.fround(0.6), Math.fround(0.8)]);
  });
});

describe('embeddings workflow IDs', () => {
  it('names an embeddings request\'s workflow embed-<id>, for the reconciler too', () => {
    expect(embeddingsWorkflowId('embreq_abc')).toBe('embed-embreq_abc');
    expect(requestWorkflowId('embreq_abc')).toBe('embed-embreq_abc');
    expect(requestWorkflowId('req_abc')).toBe('chat-req_abc');
  });
});
