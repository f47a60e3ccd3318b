/**
 * An inference worker for one pool: two Temporal workers over the same backends. One takes the
 * pool's `infer` activities (sync, async and older batch lines), `slots` at a time; the other
 * takes chunks of batch lines (`inferLines`) from the pool's batch queue, `BATCH_CHUNKS` at a time.
 * Separate queues, so chunks of batch lines never hold the slots an interactive request needs to
 * be picked up; in the backend, the lines queue for a sequence behind interactive requests.
 */
import { type NativeConnection, Worker, type WorkerInterceptors } from '@temporalio/worker';
import type { PayloadCodec } from '@temporalio/common';
import { createInferenceActivities } from '../activities/inference.js';
import { createBatchInferenceActivities } from '../activities/inference-lines.js';
import type { BackendRegistry } from '../activities/backends/registry.js';
import type { Db } from '../db/database.js';
import { inferenceBatchTaskQueue, inferenceTaskQueue } from '../contracts/ids.js';

/** Chunks of batch lines a worker runs at once (their lines share the backend's slots). */
const BATCH_CHUNKS = 2;
import type { Metrics } from '../runtime/metrics.js';

export interface InferenceWorkerOptions {
  namespace: string;
  pool: string;
  /** Concurrent inference activities = parallel sequences of the pool's models. */
  slots: number;
  /** Codecs over every payload (the encryption codec of `SLUICE_PAYLOAD_KEY`). @default [] */
  payloadCodecs?: PayloadCodec[];
  /** Activity interceptors (traces: `Tracing.workerInterceptors.activity`). @default none */
  activityInterceptors?: NonNullable<WorkerInterceptors['activity']>;
}

export async function createInferenceWorkers(
  options: InferenceWorkerOptions,
  connection: NativeConnection,
  deps: { backends: BackendRegistry; metrics: Metrics | null; streamDb?: Db | null },
): Promise<Worker[]> {
  const common = {
    connection,
    namespace: options.namespace,
    dataConverter: { payloadCodecs: options.payloadCodecs ?? [] },
    // Heartbeats carry cancellation back to a generation: send them at least every 2 s instead of
    // the default 80% of the heartbeat timeout, so a cancelled job stops using its slot promptly.
    maxHeartbeatThrottleInterval: '2s',
    defaultHeartbeatThrottleInterval: '2s',
    // Cancellation reaches an activity through heartbeats; let generations stop before shutdown ends.
    shutdownGraceTime: '20s',
    ...(options.activityInterceptors ? { interceptors: { activity: options.activityInterceptors } } : {}),
  } as const;
  const activityDeps = { backends: deps.backends, pool: options.pool, metrics: deps.metrics, streamDb: deps.streamDb ?? null };
  return Promise.all([
    Worker.create({
      ...common,
      taskQueue: inferenceTaskQueue(options.pool),
      activities: createInferenceActivities(activityDeps),
      maxConcurrentActivityTaskExecutions: options.slots,
    }),
    Worker.create({
      ...common,
      taskQueue: inferenceBatchTaskQueue(options.pool),
      activities: createBatchInferenceActivities(activityDeps),
      maxConcurrentActivityTaskExecutions: BATCH_CHUNKS,
    }),
  ]);
}
