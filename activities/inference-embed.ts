/** The embed step of an embeddings request or batch line (see {@link embedOnce}). */
import { Context } from '@temporalio/activity';
import type { EmbedInput, EmbedOutput } from '../contracts/embeddings.js';
import { checkEmbedInputs } from '../domain/embeddings-validation.js';
import { vectorToBase64 } from '../domain/embedding-vectors.js';
import { BackendError, InvalidEmbeddingInput } from './backends/types.js';
import { requestFailure } from './failures.js';
import { HEARTBEAT_EVERY_MS, type InferenceDeps } from './inference-generate.js';
import { consumedBy, toFailure } from './inference-failures.js';

/**
 * The embed step: every input of one embeddings request through the deployment's backend in one
 * call, checked at the boundary first (a history may carry anything), vectors returned as base64
 * float32 (`EmbedOutput`). Failures map as `infer`'s do; it heartbeats while the backend works so
 * a cancellation reaches it.
 */
export async function embedOnce(deps: InferenceDeps, input: EmbedInput): Promise<EmbedOutput> {
  const ctx = Context.current();
  const invalid = checkEmbedInputs(input.inputs, input.dimensions);
  if (invalid !== null) throw requestFailure('BadRequest', `invalid request for the backend: ${invalid.message}`, { code: 'invalid_value', param: invalid.param });
  const timer = setInterval(() => ctx.heartbeat(), HEARTBEAT_EVERY_MS);
  const started = performance.now();
  let outcome = 'error';
  deps.metrics?.inferenceInFlight.inc({ pool: deps.pool });
  try {
    const backend = await deps.backends.get(input.deployment);
    if (!backend.embed) throw new BackendError('bad_request', `deployment ${input.deployment.id} (${input.deployment.provider}) does not serve embeddings`);
    const result = await backend.embed({
      inputs: input.inputs, dimensions: input.dimensions, maxPromptTokens: input.maxPromptTokens, signal: ctx.cancellationSignal,
    });
    if (result.vectors.length !== input.inputs.length) throw new BackendError('unavailable', 'backend returned a vector count unlike the inputs');
    outcome = 'ok';
    return { vectors: result.vectors.map(vectorToBase64), promptTokens: result.promptTokens, latencyMs: Math.round(performance.now() - started) };
  } catch (err) {
    const aborted = ctx.cancellationSignal.aborted;
    if (aborted) outcome = 'cancelled';
    if (!aborted && err instanceof InvalidEmbeddingInput) throw requestFailure('BadRequest', err.message, { code: err.code, param: err.param });
    if (!aborted && err instanceof BackendError && err.kind === 'context_length') {
      throw requestFailure('ContextLengthExceeded', err.message, { code: 'context_length_exceeded', param: 'input' });
    }
    throw toFailure(err, aborted, consumedBy(err));
  } finally {
    clearInterval(timer);
    deps.metrics?.inferenceInFlight.dec({ pool: deps.pool });
    deps.metrics?.inferenceLatency.observe({ deployment: input.deployment.id, outcome }, (performance.now() - started) / 1000);
  }
}
