/**
 * `billing`: one tenant's calendar month (UTC) → its SLA measured (`patched('sla-credits')`) → one
 * invoice, with the SLA credit it earned as an adjustment line, reconciled against the ledger.
 * Workflow ID `billing-<tenant>-<period>`: a double trigger joins the running workflow, a re-run
 * after completion finds the live invoice (the close writes nothing twice) and reconciles it again,
 * so a ledger that changed behind the invoice's back fails loudly.
 *
 * `billingRun`: bills every billable tenant of a period (the previous month when started by the
 * monthly Schedule), as child workflows with those same IDs, a few at a time.
 *
 * `dayClose`: closes a UTC day (the previous one when started by the daily Schedule): each tenant's
 * billable totals for the day, written once, then checked against the ledger. Workflow ID
 * `day-close-<day>`: a re-run writes nothing and checks again.
 */
import {
  ApplicationFailure,
  ParentClosePolicy,
  WorkflowIdReusePolicy,
  defineQuery,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
  type ActivityOptions,
} from '@temporalio/workflow';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import type { ControlActivities } from '../activities/index.js';
import { runFailure } from './failures.js';
import type { DayCloseInput, DayCloseOutput, BillingInput, BillingOutput, BillingRunInput, BillingRunOutput } from '../contracts/billing.js';
import { SearchAttributes, billingWorkflowId } from '../contracts/ids.js';
import { DAY_PATTERN, PERIOD_PATTERN, previousDay, previousPeriod } from '../domain/billing-calendar.js';

export type BillingState =
  | { step: 'closing' }
  | { step: 'reconciling'; invoiceId: string }
  | { step: 'done'; invoiceId: string; totalMicros: number };

export const billingStateQuery = defineQuery<BillingState>('billingState');

/** Named timeout profiles. */
const PROFILES = {
  /** A close aggregates a month of a tenant's ledger in one transaction: minutes, not seconds. */
  close: {
    startToCloseTimeout: '10m',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 10, nonRetryableErrorTypes: ['PeriodOpen', 'NotFound'] },
  } satisfies ActivityOptions,
  reconcile: {
    startToCloseTimeout: '5m',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 10, nonRetryableErrorTypes: ['ReconciliationMismatch', 'NotFound'] },
  } satisfies ActivityOptions,
  list: {
    startToCloseTimeout: '1m',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10 },
  } satisfies ActivityOptions,
};

/** How many tenants a run bills at once. */
const RUN_CONCURRENCY = 8;

function assertPeriod(period: string): void {
  if (!PERIOD_PATTERN.test(period)) throw ApplicationFailure.create({ type: 'BadRequest', message: `period must be YYYY-MM, got '${period}'`, nonRetryable: true });
}

export async function billing(input: BillingInput): Promise<BillingOutput> {
  assertPeriod(input.period);
  let state: BillingState = { step: 'closing' };
  setHandler(billingStateQuery, () => state);
  upsertSearchAttributes([
    { key: SearchAttributes.kind, value: 'billing' },
    { key: SearchAttributes.tenant, value: input.tenantId },
    { key: SearchAttributes.status, value: 'running' },
  ]);
  const close = proxyActivities<ControlActivities>(PROFILES.close);
  const check = proxyActivities<ControlActivities>(PROFILES.reconcile);
  try {
    // The plan's SLA, measured over the closed period; the close writes the credit it earns, once.
    const sla = patched('sla-credits') ? await close.measureSla({ tenantId: input.tenantId, period: input.period }) : null;
    const invoice = await close.closeBillingPeriod({ tenantId: input.tenantId, period: input.period, workflowId: workflowInfo().workflowId, sla });
    state = { step: 'reconciling', invoiceId: invoice.invoiceId };
    await check.reconcileInvoice({ invoiceId: invoice.invoiceId });
    state = { step: 'done', invoiceId: invoice.invoiceId, totalMicros: invoice.totalMicros };
    upsertSearchAttributes([{ key: SearchAttributes.status, value: 'succeeded' }]);
    return invoice;
  } catch (err) {
    upsertSearchAttributes([{ key: SearchAttributes.status, value: 'failed' }]);
    // Fail the run with the activity's own type and message.
    throw runFailure(err);
  }
}

/**
 * Runs the tenant's billing workflow as a child and returns its invoice. When that workflow is
 * already running (another trigger), waits for it to finish and runs it again: the re-run finds
 * the one invoice and reconciles it.
 */
async function billTenant(tenantId: string, period: string): Promise<BillingOutput> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      const child = await startChild(billing, {
        workflowId: billingWorkflowId(tenantId, period),
        args: [{ tenantId, period }],
        workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
        parentClosePolicy: ParentClosePolicy.ABANDON,
      });
      return await child.result();
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError) || attempt >= 60) throw err;
      await sleep('5s');
    }
  }
}

export async function billingRun(input: BillingRunInput): Promise<BillingRunOutput> {
  const period = input.period ?? previousPeriod(workflowInfo().startTime);
  assertPeriod(period);
  upsertSearchAttributes([{ key: SearchAttributes.kind, value: 'billing-run' }]);
  const { listBillableTenants } = proxyActivities<ControlActivities>(PROFILES.list);
  const tenants = input.tenantIds ?? (await listBillableTenants({ period }));
  const out: BillingRunOutput = { period, invoices: [], failures: [] };
  for (let i = 0; i < tenants.length; i += RUN_CONCURRENCY) {
    await Promise.all(tenants.slice(i, i + RUN_CONCURRENCY).map(async (tenantId) => {
      try {
        const r = await billTenant(tenantId, period);
        out.invoices.push({ tenantId, invoiceId: r.invoiceId, created: r.created, totalMicros: r.totalMicros });
      } catch (err) {
        const cause = err instanceof Error && 'cause' in err && err.cause instanceof Error ? `: ${err.cause.message}` : '';
        out.failures.push({ tenantId, message: `${err instanceof Error ? err.message : String(err)}${cause}` });
      }
    }));
  }
  out.invoices.sort((a, b) => a.tenantId.localeCompare(b.tenantId));
  out.failures.sort((a, b) => a.tenantId.localeCompare(b.tenantId));
  return out;
}

export async function dayClose(input: DayCloseInput): Promise<DayCloseOutput> {
  const day = input.day ?? previousDay(workflowInfo().startTime);
  if (!DAY_PATTERN.test(day)) throw ApplicationFailure.create({ type: 'BadRequest', message: `day must be YYYY-MM-DD, got '${day}'`, nonRetryable: true });
  upsertSearchAttributes([
    { key: SearchAttributes.kind, value: 'day-close' },
    ...(input.tenantId ? [{ key: SearchAttributes.tenant, value: input.tenantId }] : []),
    { key: SearchAttributes.status, value: 'running' },
  ]);
  const close = proxyActivities<ControlActivities>(PROFILES.close);
  const check = proxyActivities<ControlActivities>(PROFILES.reconcile);
  try {
    const closed = await close.closeDay({ day, tenantId: input.tenantId, workflowId: workflowInfo().workflowId });
    await check.reconcileDay({ day, tenantId: input.tenantId });
    upsertSearchAttributes([{ key: SearchAttributes.status, value: 'succeeded' }]);
    return { day, ...closed };
  } catch (err) {
    upsertSearchAttributes([{ key: SearchAttributes.status, value: 'failed' }]);
    throw runFailure(err);
  }
}
