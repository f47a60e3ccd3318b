/**
 * `reconcileReservations`: run by a Temporal Schedule (see `workers/schedules.ts`). Releases held
 * reservations whose request workflow is closed (a terminated or timed-out request never ran its
 * compensation), purges stored content past each tenant's retention period, and checkpoints the
 * audit chain's head.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { ControlActivities } from '../activities/index.js';

/** Schedule ID of the maintenance run, and its workflow's ID prefix (business keys, no secrets). */
export const RECONCILE_SCHEDULE_ID = 'sluice-reconcile';

export interface ReconcileWorkflowInput {
  /** Reservations held at least this long are candidates. @default 60 */
  minAgeSeconds?: number;
  /** At most this many per run; the next run takes the rest. @default 500 */
  limit?: number;
  /** Also checkpoint the audit chain. @default true */
  checkpoint?: boolean;
  /** Also purge content past tenants' retention, at most this many requests and files per run (0 = skip). @default 5000 */
  purgeLimit?: number;
}

export interface ReconcileWorkflowResult {
  checked: number;
  released: string[];
  checkpoint: { seq: number; signed: boolean } | null;
  /** Requests and files whose content the retention purge removed in this run. */
  purged: { requests: number; files: number } | null;
}

const steps = proxyActivities<ControlActivities>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 },
});

export async function reconcileReservations(input: ReconcileWorkflowInput = {}): Promise<ReconcileWorkflowResult> {
  const { checked, released } = await steps.releaseClosedReservations({ minAgeSeconds: input.minAgeSeconds ?? 60, limit: input.limit ?? 500 });
  const purgeLimit = input.purgeLimit ?? 5000;
  const purged = purgeLimit > 0 ? await steps.purgeExpiredContent({ limit: purgeLimit }) : null;
  const checkpoint = (input.checkpoint ?? true) ? await steps.checkpointAudit() : null;
  return { checked, released, checkpoint, purged };
}
