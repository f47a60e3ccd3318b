/**
 * The infer step, run by the inference worker of the deployment's pool. Retries are the
 * workflow's (declared where it proxies this activity); this maps backend failures to what those
 * retries need: non-retryable for bad requests, `nextRetryDelay` from an upstream's Retry-After.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { InferInput, InferOutput } from '../workflows/contracts.js';
import { BackendError } from './backends/types.js';
import type { BackendRegistry } from './backends/registry.js';
import { requestFailure } from './failures.js';
import type { Metrics } from '../workers/metrics.js';

/** Heartbeat at most this often while generating. */
const HEARTBEAT_EVERY_MS = 1000;

function toFailure(err: unknown): unknown {
  if (!(err instanceof BackendError)) return err;
  switch (err.kind) {
    case 'bad_request':
      return requestFailure('BadRequest', err.message, { code: 'upstream_bad_request' });
    case 'context_length':
      return requestFailure('ContextLengthExceeded', err.message, { code: 'context_length_exceeded', param: 'messages' });
    case 'rate_limited':
    case 'unavailable':
      return ApplicationFailure.create({
        type: err.kind === 'rate_limited' ? 'UpstreamRateLimited' : 'UpstreamUnavailable',
        message: err.message,
        nonRetryable: false,
        ...(err.retryAfterMs !== null ? { nextRetryDelay: err.retryAfterMs } : {}),
      });
  }
}

export function createInferenceActivities(deps: { backends: BackendRegistry; pool: string; metrics: Metrics | null }) {
  return {
    async infer(input: InferInput): Promise<InferOutput> {
      const ctx = Context.current();
      const started = performance.now();
      let lastBeat = 0;
      let progress = 0;
      // Upstreams that do not stream report no progress until the end: beat on a timer too.
      const timer = setInterval(() => ctx.heartbeat({ completionTokens: progress }), HEARTBEAT_EVERY_MS * 3);
      deps.metrics?.inferenceInFlight.inc({ pool: deps.pool });
      let outcome = 'error';
      try {
        const backend = await deps.backends.get(input.deployment);
        ctx.heartbeat({ completionTokens: 0 });
        const result = await backend.generate({
          messages: input.messages,
          params: input.params,
          signal: ctx.cancellationSignal,
          onProgress: (completionTokens) => {
            progress = completionTokens;
            const now = performance.now();
            if (now - lastBeat >= HEARTBEAT_EVERY_MS) {
              lastBeat = now;
              ctx.heartbeat({ completionTokens });
            }
          },
        });
        outcome = 'ok';
        return { ...result, latencyMs: Math.round(performance.now() - started) };
      } catch (err) {
        if (ctx.cancellationSignal.aborted) outcome = 'cancelled';
        throw toFailure(err);
      } finally {
        clearInterval(timer);
        deps.metrics?.inferenceInFlight.dec({ pool: deps.pool });
        deps.metrics?.inferenceLatency.observe({ deployment: input.deployment.id, outcome }, (performance.now() - started) / 1000);
      }
    },
  };
}

export type InferenceActivities = ReturnType<typeof createInferenceActivities>;
