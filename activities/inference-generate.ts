/** One generation on a deployment's backend, checked at the backend boundary and metered; shared by `infer` and `inferLines`. */
import type { ConsumedTokens, InferInput } from '../contracts/chat.js';
import type { GenerateRequest, GenerateResult } from './backends/types.js';
import type { BackendRegistry } from './backends/registry.js';
import { requestFailure } from './failures.js';
import { checkGenerateInput } from '../domain/sampling-params.js';
import { refusedOn } from '../domain/chat-fields.js';
import { toolCallId } from '../domain/tools.js';
import type { Metrics } from '../runtime/metrics.js';
import type { Db } from '../db/database.js';
import { consumedBy } from './inference-failures.js';

/** Gives the calls a backend left without an ID theirs (`toolCallId`: the same on every attempt and replay). */
function withCallIds(result: GenerateResult, requestId: string): GenerateResult {
  if (result.toolCalls === undefined) return result;
  return { ...result, toolCalls: result.toolCalls.map((c, i) => (c.id === '' ? { ...c, id: toolCallId(requestId, i) } : c)) };
}

/** Heartbeat at most this often while generating. */
export const HEARTBEAT_EVERY_MS = 1000;

/** Waits `ms`, or less if `signal` aborts meanwhile. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

export interface InferenceDeps {
  backends: BackendRegistry;
  pool: string;
  metrics: Metrics | null;
  /**
   * Where streamed requests' chunks are published (the stream channel, db/repositories/streams.ts):
   * the inference worker's narrow stream-writer connection (`SLUICE_STREAM_DATABASE_URL`). Null: a
   * streamed request's text reaches the client in one piece, when the workflow completes. @default null
   */
  streamDb?: Db | null;
}

/** One generation's end: the completion and its latency, or the backend's error and the tokens it spent. */
type Generation =
  | { ok: true; result: GenerateResult; latencyMs: number }
  | { ok: false; err: unknown; spent: ConsumedTokens | null };

/**
 * Runs `input` once on its deployment's backend, metered (pool's in-flight gauge, latency by
 * outcome). A failure's spent tokens are what the backend reported, else the last progress.
 */
export async function generate(
  deps: InferenceDeps,
  input: InferInput,
  request: Pick<GenerateRequest, 'signal' | 'priority' | 'fairnessKey' | 'onProgress' | 'onDelta'>,
): Promise<Generation> {
  // The backend boundary: whatever a history carries (a stored experiment override, an input
  // recorded before a rule existed) is checked before any backend sees it; a bad value would fail
  // every attempt the same way, so it is the request's fault (non-retryable), never a crash.
  const invalid = checkGenerateInput(input);
  if (invalid !== null) {
    return { ok: false, err: requestFailure('BadRequest', `invalid request for the backend: ${invalid.message}`, { code: 'invalid_value', param: invalid.param }), spent: null };
  }
  // A field the deployment's backend cannot honour is the request's fault on this deployment
  // (non-retryable, ends the request: a fallback never drops a field; domain/chat-fields.ts).
  const refused = refusedOn(input.deployment.provider, input.params.extras, `by the model's ${input.deployment.provider} deployment`);
  if (refused !== null) {
    return { ok: false, err: requestFailure('BadRequest', refused.message, { code: refused.code, param: refused.param }), spent: null };
  }
  const started = performance.now();
  let progress = { completionTokens: 0, promptTokens: 0 };
  deps.metrics?.inferenceInFlight.inc({ pool: deps.pool });
  let outcome = 'error';
  try {
    const backend = await deps.backends.get(input.deployment);
    const result = await backend.generate({
      ...request,
      messages: input.messages,
      params: input.params,
      onProgress: (completionTokens, promptTokens) => {
        progress = { completionTokens, promptTokens };
        request.onProgress?.(completionTokens, promptTokens);
      },
    });
    outcome = 'ok';
    return { ok: true, result: withCallIds(result, input.requestId), latencyMs: Math.round(performance.now() - started) };
  } catch (err) {
    if (request.signal.aborted) outcome = 'cancelled';
    return { ok: false, err, spent: consumedBy(err) ?? (progress.promptTokens + progress.completionTokens > 0 ? progress : null) };
  } finally {
    deps.metrics?.inferenceInFlight.dec({ pool: deps.pool });
    deps.metrics?.inferenceLatency.observe({ deployment: input.deployment.id, outcome }, (performance.now() - started) / 1000);
  }
}
