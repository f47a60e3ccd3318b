/**
 * The infer step, run by the inference worker of the deployment's pool. Retries are the
 * workflow's (declared where it proxies this activity); this maps backend failures to what those
 * retries need: non-retryable for bad requests, `nextRetryDelay` from an upstream's Retry-After.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { ConsumedTokens, InferInput, InferOutput } from '../contracts/chat.js';
import type { EmbedInput, EmbedOutput } from '../contracts/embeddings.js';
import { checkEmbedInputs } from '../domain/embeddings-validation.js';
import { vectorToBase64 } from '../domain/embedding-vectors.js';
import type { FailureDetails, ItemResult } from '../contracts/failures.js';
import { INFER_RETRY } from '../contracts/profiles.js';
import { BackendError, InterruptedGeneration, InvalidEmbeddingInput, type GenerateRequest, type GenerateResult } from './backends/types.js';
import type { BackendRegistry } from './backends/registry.js';
import { requestFailure } from './failures.js';
import { checkGenerateInput } from '../domain/sampling-params.js';
import { refusedOn } from '../domain/chat-fields.js';
import type { Metrics } from '../runtime/metrics.js';
import type { Db } from '../db/database.js';
import { isStreamClosedError } from '../db/repositories/streams.js';
import { chunkPublisherFor, createStreamPublisher } from './stream-publisher.js';

/** Heartbeat at most this often while generating. */
const HEARTBEAT_EVERY_MS = 1000;

/**
 * A batch line's attempts inside `inferLines`, and the waits between them: the retry policy a
 * line's own `infer` activity has in the workflow (one definition, workflows/profiles.ts).
 */
export const LINE_RETRY = INFER_RETRY;

/** Waits `ms`, or less if `signal` aborts meanwhile. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
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

/**
 * What the workflow sees of a failed or cancelled generation. Tokens it spent travel in the
 * failure's details (`consumed`), so the workflow records them as unbilled usage: on a failure in
 * the ApplicationFailure's details, on a cancellation in the CancelledFailure's.
 */
function consumedBy(err: unknown): ConsumedTokens | null {
  return err instanceof InterruptedGeneration ? err.consumed : err instanceof BackendError ? err.consumed : null;
}

function toFailure(err: unknown, cancelled: boolean, consumed: ConsumedTokens | null): unknown {
  const cause = err instanceof InterruptedGeneration ? err.cause : err;
  if (cancelled) return consumed ? new CancelledFailure('generation cancelled', [{ consumed }]) : cause;
  // Already decided (the boundary check's BadRequest): passed on as it is.
  if (cause instanceof ApplicationFailure) return cause;
  if (!(cause instanceof BackendError)) {
    if (!consumed) return cause;
    const message = cause instanceof Error ? cause.message : String(cause);
    return ApplicationFailure.create({ type: 'UpstreamUnavailable', message, nonRetryable: false, details: [detailsWith(consumed)] });
  }
  switch (cause.kind) {
    case 'bad_request':
      return requestFailure('BadRequest', cause.message, { code: 'upstream_bad_request', consumed });
    case 'too_large':
      return requestFailure('BadRequest', cause.message, { code: 'completion_too_large', consumed });
    case 'context_length':
      return requestFailure('ContextLengthExceeded', cause.message, { code: 'context_length_exceeded', param: 'messages', consumed });
    case 'rate_limited':
    case 'unavailable':
      return ApplicationFailure.create({
        type: cause.kind === 'rate_limited' ? 'UpstreamRateLimited' : 'UpstreamUnavailable',
        message: cause.message,
        nonRetryable: false,
        details: [detailsWith(consumed)],
        ...(cause.retryAfterMs !== null ? { nextRetryDelay: cause.retryAfterMs } : {}),
      });
  }
}

function addConsumed(a: ConsumedTokens | null, b: ConsumedTokens | null): ConsumedTokens | null {
  if (!a || !b) return a ?? b;
  return { promptTokens: a.promptTokens + b.promptTokens, completionTokens: a.completionTokens + b.completionTokens };
}

/**
 * An attempt's heartbeat: its own progress so far, and what earlier attempts spent. An attempt
 * that fails folds its spending into `consumedBefore` and zeroes its progress in a last beat;
 * one whose worker died leaves its progress there, so the next attempt counts that too.
 */
interface InferHeartbeat {
  completionTokens: number;
  promptTokens: number;
  consumedBefore: ConsumedTokens | null;
  /** A streamed request's attempt sent its first chunk: a later attempt must not restart the text. */
  streamed?: boolean;
}

/** How long an attempt whose client closed the stream waits for the workflow's cancellation. */
const CLOSED_STREAM_WAIT_MS = 10_000;

/**
 * A streamed request's attempt failed after text was sent (or an earlier attempt had sent some):
 * non-retryable, and the pipeline does not fall back, so the client's text is never restarted.
 */
function streamInterrupted(message: string, consumed: ConsumedTokens | null): ApplicationFailure {
  return ApplicationFailure.create({
    type: 'StreamInterrupted', message, nonRetryable: true,
    details: [{ code: 'stream_interrupted', param: null, retryAfterSeconds: null, consumed } satisfies FailureDetails],
  });
}

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/** What earlier attempts of this activity spent, from the last heartbeat the server kept. */
function carriedConsumption(details: unknown): ConsumedTokens | null {
  const beat = (details ?? {}) as Partial<InferHeartbeat>;
  const before = beat.consumedBefore && isCount(beat.consumedBefore.promptTokens) && isCount(beat.consumedBefore.completionTokens) ? beat.consumedBefore : null;
  // A previous attempt that stopped heartbeating mid-generation (its worker died): what it had
  // reported by its last beat was spent.
  const died = isCount(beat.promptTokens) && isCount(beat.completionTokens) && beat.promptTokens + beat.completionTokens > 0
    ? { promptTokens: beat.promptTokens, completionTokens: beat.completionTokens }
    : null;
  return addConsumed(before, died);
}

function detailsWith(consumed: ConsumedTokens | null): FailureDetails {
  return { code: null, param: null, retryAfterSeconds: null, consumed };
}

interface InferenceDeps {
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
async function generate(
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
    return { ok: true, result, latencyMs: Math.round(performance.now() - started) };
  } catch (err) {
    if (request.signal.aborted) outcome = 'cancelled';
    return { ok: false, err, spent: consumedBy(err) ?? (progress.promptTokens + progress.completionTokens > 0 ? progress : null) };
  } finally {
    deps.metrics?.inferenceInFlight.dec({ pool: deps.pool });
    deps.metrics?.inferenceLatency.observe({ deployment: input.deployment.id, outcome }, (performance.now() - started) / 1000);
  }
}

/**
 * The embed step: every input of one embeddings request through the deployment's backend in one
 * call, checked at the boundary first (a history may carry anything), vectors returned as base64
 * float32 (`EmbedOutput`). Failures map as `infer`'s do; it heartbeats while the backend works so
 * a cancellation reaches it.
 */
async function embedOnce(deps: InferenceDeps, input: EmbedInput): Promise<EmbedOutput> {
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

export function createInferenceActivities(deps: InferenceDeps) {
  return {
    /** Embeddings of one request's inputs, in one activity (see `embedOnce`). */
    embed: (input: EmbedInput): Promise<EmbedOutput> => embedOnce(deps, input),

    async infer(input: InferInput): Promise<InferOutput> {
      const ctx = Context.current();
      let lastBeat = Number.NEGATIVE_INFINITY; // the first progress beats at once, whatever the process's uptime
      let progress = { completionTokens: 0, promptTokens: 0 };
      // Tokens earlier attempts spent before failing ride along in every heartbeat, so the attempt
      // that ends the activity reports them all: the workflow records each spent token once.
      const carried = carriedConsumption(ctx.info.heartbeatDetails);
      const streamDb = input.stream === true ? (deps.streamDb ?? null) : null;
      // A streamed attempt that sent text and died (its worker killed): this retry must not start
      // the text again behind the client's back.
      if (streamDb !== null && (ctx.info.heartbeatDetails as Partial<InferHeartbeat> | undefined)?.streamed === true) {
        throw streamInterrupted('an earlier attempt of this streamed request stopped after sending text', carried);
      }
      let streamed = false;
      const beat = (details: InferHeartbeat = { ...progress, consumedBefore: carried, ...(streamed ? { streamed } : {}) }) => ctx.heartbeat(details);
      // The client closing the stream stops the generation at the next chunk, before Temporal's
      // cancellation (carried by heartbeats) reaches this attempt.
      const clientGone = new AbortController();
      const signal = streamDb === null ? ctx.cancellationSignal : AbortSignal.any([ctx.cancellationSignal, clientGone.signal]);
      const publisher = streamDb === null ? null : createStreamPublisher({
        publish: chunkPublisherFor(streamDb, input.requestId, `${input.deployment.id}:${ctx.info.attempt}`),
        onFirstChunk: () => {
          streamed = true;
          beat();
        },
        onClosed: () => clientGone.abort(new Error('the client closed the stream')),
      });
      // Beats come with progress (at most every second) and from a timer (upstreams that do not
      // stream report no progress until the end; a request waiting for a slot reports none). None
      // at the start: a request done within a second sends no heartbeat, which is one fewer RPC
      // and mutable-state write on the server per request.
      const timer = setInterval(() => beat(), HEARTBEAT_EVERY_MS);
      try {
        const run = await generate(deps, input, {
          signal,
          ...(publisher ? { onDelta: (text: string) => publisher.push(text) } : {}),
          onProgress: (completionTokens, promptTokens) => {
            progress = { completionTokens, promptTokens };
            const now = performance.now();
            if (now - lastBeat >= HEARTBEAT_EVERY_MS) {
              lastBeat = now;
              beat();
            }
          },
        });
        if (run.ok) {
          if (publisher) {
            // A backend that does not stream (or held text back) sends the rest now.
            if (run.result.content.startsWith(publisher.pushed)) publisher.push(run.result.content.slice(publisher.pushed.length));
            try {
              await publisher.flush();
            } catch (err) {
              if (!isStreamClosedError(err)) throw streamInterrupted(`the stream channel failed: ${err instanceof Error ? err.message : String(err)}`, addConsumed(carried, { promptTokens: run.result.promptTokens, completionTokens: run.result.completionTokens }));
            }
          }
          return { ...run.result, latencyMs: run.latencyMs, failedAttempts: carried };
        }
        const consumed = addConsumed(carried, run.spent);
        // Folded into consumedBefore for the next attempt, if any; this attempt's progress is zeroed.
        if (consumed !== carried) beat({ completionTokens: 0, promptTokens: 0, consumedBefore: consumed, ...(streamed ? { streamed } : {}) });
        if (clientGone.signal.aborted && !ctx.cancellationSignal.aborted) {
          // The API cancels the workflow as it closes the stream: wait for that cancellation (the
          // generation has already stopped and freed its slot), heartbeating so it arrives.
          const waitBeat = setInterval(() => beat({ completionTokens: 0, promptTokens: 0, consumedBefore: consumed, ...(streamed ? { streamed } : {}) }), 200);
          try {
            await pause(CLOSED_STREAM_WAIT_MS, ctx.cancellationSignal);
          } finally {
            clearInterval(waitBeat);
          }
          if (!ctx.cancellationSignal.aborted) throw streamInterrupted('the client closed the stream', consumed);
        }
        if (publisher?.started && !ctx.cancellationSignal.aborted) {
          throw streamInterrupted(`streamed attempt failed: ${run.err instanceof Error ? run.err.message : String(run.err)}`, consumed);
        }
        throw toFailure(run.err, ctx.cancellationSignal.aborted, consumed);
      } finally {
        clearInterval(timer);
      }
    },
  };
}

export type InferenceActivities = ReturnType<typeof createInferenceActivities>;

/**
 * Most bytes of JSON a chunk's result may carry: under Temporal's 2 MB payload limit with room for
 * the envelope. The workflow sizes chunks by an estimate (8 bytes per max token); a chunk whose
 * completions outweigh it would fail as a whole and be generated (and, upstream, bought) again.
 */
export const MAX_CHUNK_RESULT_BYTES = 1536 * 1024;

/**
 * The chunk's results, with the largest completions failed as `completion_too_large` (their tokens
 * in `consumed`, so they are recorded unbilled) until the rest fits {@link MAX_CHUNK_RESULT_BYTES}:
 * those lines fail once, with the error a single oversized completion gets, never re-bought.
 */
export function withinChunkLimit(results: ItemResult<InferOutput>[], limit = MAX_CHUNK_RESULT_BYTES): ItemResult<InferOutput>[] {
  const sizes = results.map((r) => Buffer.byteLength(JSON.stringify(r)));
  let total = sizes.reduce((a, b) => a + b, 0);
  if (total <= limit) return results;
  const out = [...results];
  const largestFirst = out.map((r, i) => i).filter((i) => out[i]?.ok).sort((a, b) => (sizes[b] ?? 0) - (sizes[a] ?? 0));
  for (const i of largestFirst) {
    if (total <= limit) break;
    const r = out[i];
    if (!r?.ok) continue;
    const spent = addConsumed(r.value.failedAttempts, { promptTokens: r.value.promptTokens, completionTokens: r.value.completionTokens });
    const failure: ItemResult<InferOutput> = {
      ok: false,
      failure: {
        type: 'BadRequest',
        message: `completion of ${Buffer.byteLength(r.value.content)} bytes does not fit the batch chunk's result limit`,
        details: [{ ...detailsWith(spent), code: 'completion_too_large' }],
      },
    };
    total += Buffer.byteLength(JSON.stringify(failure)) - (sizes[i] ?? 0);
    out[i] = failure;
  }
  return out;
}

/**
 * The infer step for a chunk of batch lines of one pool, in one activity on the pool's batch task
 * queue (`inferenceBatchTaskQueue`): every line generates through the same backends, queued for
 * a slot behind interactive requests (`priority: 'batch'`), with the retry policy a line's own
 * infer activity would get (`LINE_RETRY`, Retry-After honoured), and comes back as its own
 * result: the completion, its failure after the last attempt (the tokens every attempt spent in
 * `consumed`), or `Cancelled` with what it spent when the chunk is cancelled. The chunk heartbeats
 * while it runs; a chunk whose worker died is run again whole by Temporal (inference is not
 * billed until the line's completion step, so a line generated twice is still billed once).
 */
export function createBatchInferenceActivities(deps: InferenceDeps) {
  async function inferLine(input: InferInput, signal: AbortSignal): Promise<ItemResult<InferOutput>> {
    let spent: ConsumedTokens | null = null;
    for (let attempt = 1; ; attempt++) {
      const run = await generate(deps, input, { signal, priority: 'batch', fairnessKey: input.tenantId ?? '' });
      if (run.ok) return { ok: true, value: { ...run.result, latencyMs: run.latencyMs, failedAttempts: spent } };
      spent = addConsumed(spent, run.spent);
      if (signal.aborted) return { ok: false, failure: { type: 'Cancelled', message: 'generation cancelled', details: [detailsWith(spent)] } };
      const failure = toFailure(run.err, false, spent);
      const app = failure instanceof ApplicationFailure ? failure : null;
      if (attempt >= LINE_RETRY.maximumAttempts || app?.nonRetryable) {
        const message = failure instanceof Error ? failure.message : String(failure);
        const details = (app?.details?.[0] as FailureDetails | undefined) ?? detailsWith(spent);
        return { ok: false, failure: { type: app?.type ?? 'UpstreamUnavailable', message, details: [{ ...details, consumed: spent }] } };
      }
      const backoff = Math.min(LINE_RETRY.maximumIntervalMs, LINE_RETRY.initialIntervalMs * LINE_RETRY.backoffCoefficient ** (attempt - 1));
      const next = app?.nextRetryDelay;
      await pause(typeof next === 'number' ? next : backoff, signal);
    }
  }

  return {
    /** A batch line's embeddings, on the pool's batch queue (its inputs in one activity, as a request's). */
    embed: (input: EmbedInput): Promise<EmbedOutput> => embedOnce(deps, input),
    async inferLines(input: { items: InferInput[] }): Promise<ItemResult<InferOutput>[]> {
      const ctx = Context.current();
      let done = 0;
      const timer = setInterval(() => ctx.heartbeat({ done, of: input.items.length }), HEARTBEAT_EVERY_MS);
      try {
        return withinChunkLimit(await Promise.all(input.items.map(async (item) => {
          const result = await inferLine(item, ctx.cancellationSignal);
          done += 1;
          return result;
        })));
      } finally {
        clearInterval(timer);
      }
    },
  };
}

export type BatchInferenceActivities = ReturnType<typeof createBatchInferenceActivities>;
