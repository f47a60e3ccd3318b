/** Circuit state per deployment, shared by every worker through PostgreSQL. */
import type { Db } from '../database.js';
import type { CircuitRow } from '../tables/index.js';
import {
  breakerOnAcquire, breakerOnResult, initialBreakerState, type BreakerConfig, type BreakerState,
} from '../../domain/circuit-breaker.js';

/** A stored circuit as the breaker's state. */
export function toState(row: CircuitRow): BreakerState {
  return {
    state: row.state,
    failures: row.failures,
    windowStartedAt: row.window_started_at.getTime(),
    openedAt: row.opened_at?.getTime() ?? null,
    probeStartedAt: row.probe_started_at?.getTime() ?? null,
  };
}

/** The deployment's circuit as stored (null: never recorded, i.e. closed). */
export async function readCircuit(db: Db, deploymentId: string): Promise<BreakerState | null> {
  const row = await db.selectFrom('circuit_state').selectAll().where('deployment_id', '=', deploymentId).executeTakeFirst();
  return row ? toState(row) : null;
}

async function transition(
  db: Db,
  deploymentId: string,
  now: Date,
  step: (s: BreakerState) => { next: BreakerState; value: boolean },
): Promise<{ value: boolean; state: BreakerState }> {
  return db.transaction().execute(async (trx) => {
    const init = initialBreakerState(now.getTime());
    await trx
      .insertInto('circuit_state')
      .values({ deployment_id: deploymentId, state: 'closed', failures: 0, window_started_at: now })
      .onConflict((oc) => oc.column('deployment_id').doNothing())
      .execute();
    const row = await trx.selectFrom('circuit_state').selectAll().where('deployment_id', '=', deploymentId).forUpdate().executeTakeFirst();
    const current = row ? toState(row) : init;
    const { next, value } = step(current);
    if (next !== current) {
      await trx
        .updateTable('circuit_state')
        .set({
          state: next.state,
          failures: next.failures,
          window_started_at: new Date(next.windowStartedAt),
          opened_at: next.openedAt === null ? null : new Date(next.openedAt),
          probe_started_at: next.probeStartedAt === null ? null : new Date(next.probeStartedAt),
          updated_at: now,
        })
        .where('deployment_id', '=', deploymentId)
        .execute();
    }
    return { value, state: next };
  });
}

/** May a request use this deployment now? Moves open → half-open when the cooldown is over. */
export async function acquireCircuit(db: Db, deploymentId: string, now: Date, cfg: BreakerConfig): Promise<{ allowed: boolean; state: BreakerState }> {
  // Hot path without a transaction: a closed circuit admits everyone and changes nothing.
  const current = await readCircuit(db, deploymentId);
  if (current?.state === 'closed') return { allowed: true, state: current };
  const r = await transition(db, deploymentId, now, (s) => {
    const { allowed, next } = breakerOnAcquire(s, now.getTime(), cfg);
    return { next, value: allowed };
  });
  return { allowed: r.value, state: r.state };
}

/** Records a request's outcome on the deployment. */
export async function recordCircuit(db: Db, deploymentId: string, ok: boolean, now: Date, cfg: BreakerConfig): Promise<BreakerState> {
  // Hot path without a transaction: a success on a clean closed circuit changes nothing.
  if (ok) {
    const current = await readCircuit(db, deploymentId);
    if (current?.state === 'closed' && current.failures === 0) return current;
  }
  const r = await transition(db, deploymentId, now, (s) => ({ next: breakerOnResult(s, ok, now.getTime(), cfg), value: ok }));
  return r.state;
}
