/**
 * The infer step, run by the inference worker of the deployment's pool. Retries are the
 * workflow's (declared where it proxies this activity); this maps backend failures to what those
 * retries need: non-retryable for bad requests, `nextRetryDelay` from an upstream's Retry-After.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { ConsumedTokens, InferInput, InferOutput } from '../contracts/chat.js';
import type { EmbedInput, EmbedOutput } from '../contracts/embeddings.js';
import type { FailureDetails } from '../contracts/failures.js';
import { isStreamClosedError } from '../db/repositories/streams.js';
import { chunkPublisherFor, createStreamPublisher } from './stream-publisher.js';
import { HEARTBEAT_EVERY_MS, generate, pause, type InferenceDeps } from './inference-generate.js';
import { addConsumed, toFailure } from './inference-failures.js';
import { embedOnce } from './inference-embed.js';
import { observeScheduleToStart } from './inference-queue-metrics.js';

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

export function createInferenceActivities(deps: InferenceDeps) {
  return {
    /** Embeddings of one request's inputs, in one activity (see `embedOnce`). */
    embed: (input: EmbedInput): Promise<EmbedOutput> => {
      observeScheduleToStart(deps.metrics, deps.pool, 'interactive');
      return embedOnce(deps, input);
    },

    async infer(input: InferInput): Promise<InferOutput> {
      observeScheduleToStart(deps.metrics, deps.pool, 'interactive');
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
        publish: chunkPublisherFor(streamDb, input.requestId, `${input.deployment.id}:${ctx.info.attempt}`, input.deployment.model),
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
