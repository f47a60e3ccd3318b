/**
 * Embedding vectors on the wire: OpenAI's `base64` encoding (little-endian float32, base64) and
 * back. One codec for the activity's result, the upstream's answer and the API's `float` answer.
 */

/** `vector` as little-endian float32, base64 (OpenAI's `encoding_format: "base64"`). */
export function vectorToBase64(vector: Float32Array): string {
  const bytes = Buffer.alloc(vector.length * 4);
  vector.forEach((v, i) => bytes.writeFloatLE(v, i * 4));
  return bytes.toString('base64');
}

/** The float32 values of a base64 vector; null when it is not whole float32 values. */
export function base64ToVector(encoded: string): Float32Array | null {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(encoded)) return null;
  const bytes = Buffer.from(encoded, 'base64');
  if (bytes.length % 4 !== 0) return null;
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readFloatLE(i * 4);
  return out;
}

/**
 * An embeddings result (vectors in base64, as the workflow returns them) in the encoding the client
 * asked for: as it is for `base64`, vectors decoded to numbers for `float`. The API and batch output.
 */
export function encodeEmbeddings<R extends { data: Array<{ embedding: string }> }>(result: R, format: 'float' | 'base64'): R | (Omit<R, 'data'> & { data: Array<Omit<R['data'][number], 'embedding'> & { embedding: number[] }> }) {
  if (format === 'base64') return result;
  return { ...result, data: result.data.map((d) => ({ ...d, embedding: base64ToNumbers(d.embedding) })) };
}

/** The values of a base64 vector as plain numbers (the `float` answer): exactly the float32 values. */
export function base64ToNumbers(encoded: string): number[] {
  return Array.from(base64ToVector(encoded) ?? new Float32Array(0));
}
