/**
 * Maintenance of the control plane's own state: reservations whose request workflow (for a batch
 * line, its batch's) is closed (terminated, timed out, or gone) are released, and the audit
 * chain's head is checkpointed.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Db } from '../db/database.js';
import { appendAudit, writeCheckpoint } from '../db/repositories/audit.js';
import { listHeldReservations, release } from '../db/repositories/quota.js';
import { requestWorkflowId } from '../contracts/ids.js';

export interface ReconcileInput {
  /** Only reservations held at least this long are looked at (a live request holds one briefly). */
  minAgeSeconds: number;
  /** Most reservations looked at in one run. */
  limit: number;
}

export interface ReconcileResult {
  checked: number;
  released: string[];
}

export function createReconcileActivities(deps: { db: Db; now: () => Date; temporal: Client | null; auditKey: string | null }) {
  return {
    /**
     * Releases every held reservation (older than `minAgeSeconds`) whose request workflow is not
     * running. Idempotent: a release applies to a held reservation only, so a retry changes nothing.
     */
    async releaseClosedReservations(input: ReconcileInput): Promise<ReconcileResult> {
      const temporal = deps.temporal;
      if (temporal === null) throw new Error('releaseClosedReservations needs a Temporal client in the control worker');
      const held = await listHeldReservations(deps.db, new Date(deps.now().getTime() - input.minAgeSeconds * 1000), input.limit);
      const released: string[] = [];
      for (const r of held) {
        let running: boolean;
        try {
          const d = await temporal.workflow.getHandle(requestWorkflowId(r.request_id)).describe();
          running = d.status.name === 'RUNNING';
        } catch (err) {
          if (!(err instanceof WorkflowNotFoundError)) throw err;
          running = false;
        }
        if (running || !(await release(deps.db, r.request_id))) continue;
        released.push(r.request_id);
        await appendAudit(deps.db, {
          actor: 'system:reconciler', tenantId: r.tenant_id, action: 'reservation.reclaimed', target: `request:${r.request_id}`,
          data: { est_cost_micros: r.est_cost_micros, est_tokens: r.est_tokens, held_since: r.created_at.toISOString() },
          idempotencyKey: `request:${r.request_id}:reclaimed`, at: deps.now(),
        });
      }
      return { checked: held.length, released };
    },

    /** Records the audit chain's head as a checkpoint (signed when the audit key is configured). */
    async checkpointAudit(): Promise<{ seq: number; signed: boolean }> {
      const cp = await writeCheckpoint(deps.db, deps.auditKey);
      return { seq: cp.seq, signed: cp.signature !== null };
    },
  };
}
