/**
 * A backend that answers at once without a model: for benchmarks that measure the durable
 * pipeline's own overhead, and for tests of what surrounds inference. Token counts are the UTF-8
 * byte counts of the prompt and of the fixed reply, so they are deterministic.
 *
 * Streamed requests get the reply one character per delta. A deployment whose `upstream_model` is
 * `stream-interval-ms:<N>` streams instead `max_tokens` one-byte tokens (`x`), one every N ms
 * (a streaming backend of known pace, for stream benchmarks and disconnect tests); cancelled
 * part way, it reports the tokens it had sent.
 */
import { InterruptedGeneration, type GenerateRequest, type GenerateResult, type InferenceBackend } from './types.js';

const REPLY = 'ok';

/** Options of {@link createInstantBackend}. */
export interface InstantBackendOptions {
  /** Streamed requests: one token every this many ms, `maxTokens` of them; null = the fixed reply. @default null */
  chunkIntervalMs?: number | null;
}

/** The chunk interval a deployment's `upstream_model` asks for (`stream-interval-ms:<N>`), else null. */
export function instantChunkInterval(upstreamModel: string | null): number | null {
  const m = /^stream-interval-ms:(\d{1,5})$/.exec(upstreamModel ?? '');
  return m ? Number(m[1]) : null;
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export function createInstantBackend(options: InstantBackendOptions = {}): InferenceBackend {
  const interval = options.chunkIntervalMs ?? null;
  return {
    async generate(request: GenerateRequest): Promise<GenerateResult> {
      if (request.signal.aborted) throw request.signal.reason ?? new Error('aborted');
      const prompt = request.messages.map((m) => `${m.role}: ${m.content}`).join('\n');
      const promptTokens = Buffer.byteLength(prompt);
      if (request.onDelta && interval !== null) {
        let sent = 0;
        try {
          for (; sent < request.params.maxTokens; sent++) {
            await pause(interval, request.signal);
            request.onDelta('x');
            request.onProgress?.(sent + 1, promptTokens);
          }
        } catch (err) {
          throw new InterruptedGeneration(err, { promptTokens, completionTokens: sent });
        }
        return { content: 'x'.repeat(sent), finishReason: 'length', promptTokens, completionTokens: sent };
      }
      const content = REPLY.slice(0, Math.max(0, request.params.maxTokens));
      if (request.onDelta) for (const ch of content) request.onDelta(ch);
      return {
        content,
        finishReason: content.length < REPLY.length ? 'length' : 'stop',
        promptTokens,
        completionTokens: Buffer.byteLength(content),
      };
    },
    async close(): Promise<void> {},
  };
}
