/**
 * Named activity profiles (timeouts and retries) of the request pipeline (`runChatPipeline`) and
 * the batch workflow. Pure data over `@temporalio/common`: safe in the workflow sandbox, and read
 * by the batch inference activity, which runs a line's attempts itself with the retry policy its
 * own `infer` activity would have had (`INFER_RETRY`).
 */
import { ActivityCancellationType, type ActivityOptions, type LocalActivityOptions } from '@temporalio/common';
import type { FailureType } from './failures.js';

/**
 * Failure types that are the request's own fault: an infer attempt is not retried on them, and
 * they end the request instead of trying the next deployment.
 */
export const CLIENT_FAULTS = ['BadRequest', 'ContextLengthExceeded'] as const satisfies readonly FailureType[];

/**
 * The infer step's attempts and the waits between them: the `infer` activity's retry policy
 * (`PIPELINE_PROFILES.infer`), and a batch line's attempts inside `inferLines`.
 */
export const INFER_RETRY = { maximumAttempts: 3, initialIntervalMs: 500, backoffCoefficient: 2, maximumIntervalMs: 20_000 } as const;

/** The request pipeline's profiles (`workflows/pipeline.ts`). */
export const PIPELINE_PROFILES = {
  /** Database steps: quick, retried on transient errors (a lost connection), never on a decision. */
  db: {
    startToCloseTimeout: '15s',
    retry: { initialInterval: '100ms', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 20 },
  },
  /**
   * The settlement of an attempt whose output the caller already has (`ChatRequestInput.answeredEarly`):
   * the database steps' timeout and backoff, retried until it succeeds (an outage of the database
   * delays the bill; it never drops it).
   */
  settleAnswered: {
    startToCloseTimeout: '15s',
    retry: { initialInterval: '100ms', backoffCoefficient: 2, maximumInterval: '5s' }, // no maximumAttempts: unlimited
  },
  /**
   * Inference: a worker must pick it up within a minute (else the next deployment is tried), a
   * generation may run 10 minutes, a silent worker is detected after 15 s without a heartbeat.
   */
  infer: {
    scheduleToStartTimeout: '60s',
    startToCloseTimeout: '10m',
    heartbeatTimeout: '15s',
    retry: {
      initialInterval: INFER_RETRY.initialIntervalMs,
      backoffCoefficient: INFER_RETRY.backoffCoefficient,
      maximumInterval: INFER_RETRY.maximumIntervalMs,
      maximumAttempts: INFER_RETRY.maximumAttempts,
      nonRetryableErrorTypes: [...CLIENT_FAULTS] as string[],
    },
  },
} as const satisfies { db: ActivityOptions & LocalActivityOptions; settleAnswered: ActivityOptions & LocalActivityOptions; infer: ActivityOptions };

/** The batch workflow's profiles (`workflows/batch.ts`). */
export const BATCH_PROFILES = {
  /** One quick database step. */
  db: {
    startToCloseTimeout: '30s',
    retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 30 },
  },
  /**
   * A chunk of lines' inference (`inferLines`): each line retried inside it as its own infer
   * activity would be; the chunk waits up to 10 minutes for a worker of its pool (the batch has
   * hours), runs up to an hour, and is run again whole if its worker goes silent for 15 s.
   */
  lineInference: {
    scheduleToStartTimeout: '10m',
    startToCloseTimeout: '1h',
    heartbeatTimeout: '15s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 },
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  },
  /** A pass over the whole file (validate, finalize): heartbeats per page. */
  file: {
    startToCloseTimeout: '15m',
    heartbeatTimeout: '60s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10, nonRetryableErrorTypes: ['NotFound'] as string[] },
  },
} as const satisfies Record<'db' | 'lineInference' | 'file', ActivityOptions>;
