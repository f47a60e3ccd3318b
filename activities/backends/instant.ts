/**
 * A backend that answers at once without a model: for benchmarks that measure the durable
 * pipeline's own overhead, and for tests of what surrounds inference. Token counts are the UTF-8
 * byte counts of the prompt and of the fixed reply, so they are deterministic.
 */
import type { GenerateRequest, GenerateResult, InferenceBackend } from './types.js';

const REPLY = 'ok';

export function createInstantBackend(): InferenceBackend {
  return {
    async generate(request: GenerateRequest): Promise<GenerateResult> {
      if (request.signal.aborted) throw request.signal.reason ?? new Error('aborted');
      const prompt = request.messages.map((m) => `${m.role}: ${m.content}`).join('\n');
      const content = REPLY.slice(0, Math.max(0, request.params.maxTokens));
      return {
        content,
        finishReason: content.length < REPLY.length ? 'length' : 'stop',
        promptTokens: Buffer.byteLength(prompt),
        completionTokens: Buffer.byteLength(content),
      };
    },
    async close(): Promise<void> {},
  };
}
