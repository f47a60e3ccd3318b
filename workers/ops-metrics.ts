/**
 * The gauges a control worker refreshes from the database, and the periodic audit verify: each
 * tenant's budget use this month, batch progress, every objective's error ratio over the
 * burn-rate windows (what the generic SLO burn alerts read), and whether the audit chain still
 * verifies (nothing else verifies it unless someone calls `GET /v1/admin/audit/verify`). Bounded
 * work per run: indexed queries limited by `OPS_GAUGE_LIMITS` (one per objective, a range scan of
 * the last 3 days, run one after another) and one incremental verify (at most
 * `INCREMENTAL_VERIFY_MAX_ROWS` rows after the latest checkpoint). Runs never overlap; every
 * control worker runs its own, so dashboards and rules take `max` over instances.
 */
import type { Db } from '../db/database.js';
import { verifyAudit } from '../db/repositories/audit.js';
import { batchProgress, tenantBudgetUse, unfinishedBatchCounts } from '../db/repositories/ops-metrics.js';
import { listSlos, measureSloWindows, sloDefinitionOf, type SloWindowCounts } from '../db/repositories/slos.js';
import { SLO_BURN_WINDOWS, ppmToRatio } from '../domain/slo.js';
import { periodOf } from '../domain/billing-calendar.js';
import type { Logger } from '../runtime/logger.js';
import { OPS_GAUGE_LIMITS, type Metrics } from '../runtime/metrics.js';

/** Finished batches keep their progress series this long after they end, ms. @default 3600000 */
export const FINISHED_BATCH_SHOWN_MS = 60 * 60_000;

export interface OpsMetricsDeps {
  db: Db;
  metrics: Metrics;
  /** Key that signs audit checkpoints: only signed checkpoints count when it is set. @default null */
  auditKey?: string | null;
  log?: Logger | null;
  /** Time between the end of one refresh and the start of the next, ms. */
  intervalMs: number;
  /** @default () => new Date() */
  now?: () => Date;
}

export interface OpsMetricsRefresher {
  /** Runs one refresh now (waits for one in flight first). */
  refresh(): Promise<void>;
  /** Stops the timer and waits for a refresh in flight. */
  stop(): Promise<void>;
}

/** Refreshes once at start, then every `intervalMs`, until `stop()`. */
export function startOpsMetrics(deps: OpsMetricsDeps): OpsMetricsRefresher {
  const now = deps.now ?? (() => new Date());
  let running: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;

  async function refreshBudgets(): Promise<void> {
    const rows = await tenantBudgetUse(deps.db, periodOf(now()), OPS_GAUGE_LIMITS.budgetTenants);
    // Reset and set in one synchronous step: a scrape never sees the gauges half-written, and a
    // tenant whose budget was removed loses its series.
    deps.metrics.budgetUsed.reset();
    deps.metrics.budgetMicros.reset();
    for (const r of rows) {
      deps.metrics.budgetUsed.set({ tenant: r.tenantId }, (r.spentMicros + r.reservedMicros) / r.budgetMicros);
      deps.metrics.budgetMicros.set({ tenant: r.tenantId, kind: 'budget' }, r.budgetMicros);
      deps.metrics.budgetMicros.set({ tenant: r.tenantId, kind: 'spent' }, r.spentMicros);
      deps.metrics.budgetMicros.set({ tenant: r.tenantId, kind: 'reserved' }, r.reservedMicros);
    }
  }

  async function refreshBatches(): Promise<void> {
    const since = new Date(now().getTime() - FINISHED_BATCH_SHOWN_MS);
    const [batches, counts] = await Promise.all([batchProgress(deps.db, since, OPS_GAUGE_LIMITS.batches), unfinishedBatchCounts(deps.db)]);
    deps.metrics.batchLines.reset();
    for (const b of batches) {
      deps.metrics.batchLines.set({ batch: b.id, status: b.status, state: 'total' }, b.total);
      deps.metrics.batchLines.set({ batch: b.id, status: b.status, state: 'completed' }, b.completed);
      deps.metrics.batchLines.set({ batch: b.id, status: b.status, state: 'failed' }, b.failed);
    }
    for (const [status, n] of Object.entries(counts)) deps.metrics.batchesByStatus.set({ status }, n);
  }

  async function refreshSlos(): Promise<void> {
    const slos = await listSlos(deps.db, { limit: OPS_GAUGE_LIMITS.slos, after: null });
    const measured: Array<{ row: (typeof slos)[number]; counts: SloWindowCounts[] }> = [];
    // One after another: at most one objective's range scan at a time on the database.
    for (const row of slos) measured.push({ row, counts: await measureSloWindows(deps.db, sloDefinitionOf(row), now(), SLO_BURN_WINDOWS) });
    // Reset and set in one synchronous step (as the budgets): a deleted objective loses its series.
    deps.metrics.sloObjective.reset();
    deps.metrics.sloErrorRatio.reset();
    deps.metrics.sloEvents.reset();
    for (const { row, counts } of measured) {
      deps.metrics.sloObjective.set({ slo: row.id, kind: row.kind, scope_type: row.scope_type, scope: row.scope_value }, ppmToRatio(row.target_ppm));
      for (const c of counts) {
        deps.metrics.sloEvents.set({ slo: row.id, window: c.window, class: 'eligible' }, c.eligible);
        deps.metrics.sloEvents.set({ slo: row.id, window: c.window, class: 'bad' }, c.eligible - c.good);
        if (c.eligible > 0) deps.metrics.sloErrorRatio.set({ slo: row.id, window: c.window }, (c.eligible - c.good) / c.eligible);
      }
    }
  }

  async function verifyChain(): Promise<void> {
    try {
      const r = await verifyAudit(deps.db, { auditKey: deps.auditKey ?? null, now: now() });
      deps.metrics.auditVerifications.inc({ result: r.ok ? 'ok' : 'broken' });
      deps.metrics.auditChainValid.set({ mode: r.mode }, r.ok ? 1 : 0);
      if (r.ok) deps.metrics.auditChainUnprotectedRows.set({ mode: r.mode }, r.checkpoints.unprotectedRows);
      else deps.log?.error('audit chain does not verify', { first_bad_seq: r.firstBadSeq, reason: r.reason });
    } catch (err) {
      // Could not run (the database is down): not a verdict on the chain; the gauge keeps its value.
      deps.metrics.auditVerifications.inc({ result: 'error' });
      throw err;
    }
  }

  async function once(): Promise<void> {
    const results = await Promise.allSettled([refreshBudgets(), refreshBatches(), refreshSlos(), verifyChain()]);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    deps.metrics.opsRefreshes.inc({ result: failed.length === 0 ? 'ok' : 'error' });
    for (const f of failed) {
      deps.log?.warn('ops metrics refresh failed', { error: f.reason instanceof Error ? f.reason.message : String(f.reason) });
    }
  }

  const refresh = (): Promise<void> => {
    running = running.then(once);
    return running;
  };
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => { void refresh().then(schedule); }, deps.intervalMs);
    timer.unref();
  };
  void refresh().then(schedule);
  return {
    refresh,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
