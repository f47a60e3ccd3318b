/** An inference worker: inference activities for one pool, `slots` at a time. */
import { NativeConnection, Worker } from '@temporalio/worker';
import type { PayloadCodec } from '@temporalio/common';
import { createInferenceActivities } from '../activities/inference.js';
import type { BackendRegistry } from '../activities/backends/registry.js';
import { inferenceTaskQueue } from '../workflows/contracts.js';
import type { Metrics } from './metrics.js';

export interface InferenceWorkerOptions {
  namespace: string;
  pool: string;
  /** Concurrent inference activities = parallel sequences of the pool's models. */
  slots: number;
  /** Codecs over every payload (the encryption codec of `SLUICE_PAYLOAD_KEY`). @default [] */
  payloadCodecs?: PayloadCodec[];
}

export async function createInferenceWorker(
  options: InferenceWorkerOptions,
  connection: NativeConnection,
  deps: { backends: BackendRegistry; metrics: Metrics | null },
): Promise<Worker> {
  return Worker.create({
    connection,
    namespace: options.namespace,
    taskQueue: inferenceTaskQueue(options.pool),
    activities: createInferenceActivities({ backends: deps.backends, pool: options.pool, metrics: deps.metrics }),
    maxConcurrentActivityTaskExecutions: options.slots,
    dataConverter: { payloadCodecs: options.payloadCodecs ?? [] },
    // Heartbeats carry cancellation back to a generation: send them at least every 2 s instead of
    // the default 80% of the heartbeat timeout, so a cancelled job stops using its slot promptly.
    maxHeartbeatThrottleInterval: '2s',
    defaultHeartbeatThrottleInterval: '2s',
    // Cancellation reaches an activity through heartbeats; let generations stop before shutdown ends.
    shutdownGraceTime: '20s',
  });
}
