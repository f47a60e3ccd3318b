/** Temporal Schedules of the control plane, created idempotently when a control worker starts. */
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleOptions } from '@temporalio/client';
import { CONTROL_TASK_QUEUE } from '../contracts/ids.js';
import { RECONCILE_SCHEDULE_ID } from '../workflows/reconcile.js';

export interface ReconcileScheduleOptions {
  /** How often the reconciler runs. @default '5m' */
  every?: string;
}

/**
 * Creates the reconciler's schedule unless it exists (any number of control workers may call
 * this at start). Overlapping runs are skipped: one reconciler at a time.
 */
export async function ensureReconcileSchedule(client: Client, options: ReconcileScheduleOptions = {}): Promise<'created' | 'exists'> {
  const created = await createScheduleOnce(client, {
    scheduleId: RECONCILE_SCHEDULE_ID,
    spec: { intervals: [{ every: (options.every ?? '5m') as `${number}m` }] },
    action: {
      type: 'startWorkflow',
      workflowType: 'reconcileReservations',
      workflowId: RECONCILE_SCHEDULE_ID,
      taskQueue: CONTROL_TASK_QUEUE,
      args: [{}],
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1m' },
  });
  return created ? 'created' : 'exists';
}

/** Creates a Schedule unless one with its ID exists. Returns whether this call created it. */
export async function createScheduleOnce(client: Client, options: ScheduleOptions): Promise<boolean> {
  try {
    await client.schedule.create(options);
    return true;
  } catch (err) {
    if (err instanceof ScheduleAlreadyRunning) return false;
    throw err;
  }
}
