/** Schedule-to-start of the inference activities: how long a task waited in its pool's queue. */
import { Context } from '@temporalio/activity';
import type { Metrics } from '../runtime/metrics.js';

/** Which of a pool's two task queues the activity came from (workers/inference-worker.ts). */
export type InferenceQueue = 'interactive' | 'batch';

/**
 * Observes `sluice_inference_schedule_to_start_seconds` for the running activity: from the moment
 * Temporal scheduled this attempt (after any retry backoff) to now, when a worker of the pool
 * started it. It grows with the pool's backlog (every slot busy, tasks queued). The two instants come
 * from the Temporal server's clock and this worker's: a skew between them shifts it (clamped at 0).
 */
export function observeScheduleToStart(metrics: Metrics | null, pool: string, queue: InferenceQueue, now = Date.now()): void {
  if (!metrics) return;
  const scheduled = Context.current().info.currentAttemptScheduledTimestampMs;
  if (!Number.isFinite(scheduled) || scheduled <= 0) return;
  metrics.scheduleToStart.observe({ pool, queue }, Math.max(0, now - scheduled) / 1000);
}
