/**
 * Billing activities (close a tenant's period into an invoice, reconcile it, list who to bill) and
 * the pricing arithmetic the ledger's settle step uses. Writes are keyed by tenant and period: a
 * retried or repeated close returns the invoice already written.
 */
import { ApplicationFailure } from '@temporalio/activity';
import type { Db } from '../db/database.js';
import type { PriceQuote } from '../db/repositories/billing.js';
import { billableTenants } from '../db/repositories/billing.js';
import { getInvoice, issueInvoice, reconcileInvoice } from '../db/repositories/invoices.js';
import { dayRange, periodRange } from '../domain/billing-calendar.js';
import { closeDay, reconcileDay } from '../db/repositories/day-close.js';
import type { Metrics } from '../runtime/metrics.js';
import type { BillingOutput, SlaMeasurement } from '../contracts/billing.js';
import { getSlaCredit } from '../db/repositories/slos.js';
import { appendAudit } from '../db/repositories/audit.js';
import type { FailureType } from '../contracts/failures.js';
import type { RequestKind } from '../contracts/chat.js';
import { costMicros } from '../domain/cost.js';

/**
 * Cost of one usage row in micro-USD: tokens at the quoted rates (rounded up to a whole micro-USD),
 * plus the per-request fee; `batch` usage then gets the list price's batch discount, the discount
 * rounded down (never bills a fraction as zero, never discounts more than the rate says).
 */
export function usageCostMicros(quote: PriceQuote, kind: RequestKind, inputTokens: number, outputTokens: number): number {
  const gross = costMicros({ inputMicrosPerMtok: quote.inputMicrosPerMtok, outputMicrosPerMtok: quote.outputMicrosPerMtok }, inputTokens, outputTokens) + quote.requestMicros;
  if (kind !== 'batch' || quote.batchDiscountBps === 0) return gross;
  return gross - Number((BigInt(gross) * BigInt(quote.batchDiscountBps)) / 10_000n);
}

export interface BillingDeps {
  db: Db;
  now: () => Date;
  metrics: Metrics | null;
}

export function createBillingActivities(deps: BillingDeps) {
  return {
    /** Tenants a run bills for `period`: active ones and any with usage in it. */
    async listBillableTenants(input: { period: string }): Promise<string[]> {
      const { start, end } = periodRange(input.period);
      return billableTenants(deps.db, start, end);
    },

    /**
     * Closes the tenant's period into its invoice, or returns the live one; with `sla` (the
     * period's measurement), an earned SLA credit is written as an adjustment line, once, and
     * audited (`invoice.sla_credit`). A period that has not
     * ended yet is refused (non-retryable `PeriodOpen`): closing it early would push the rest of the
     * month into "late" usage.
     */
    async closeBillingPeriod(input: { tenantId: string; period: string; workflowId: string; sla?: SlaMeasurement | null }): Promise<BillingOutput> {
      const now = deps.now();
      const { end } = periodRange(input.period);
      if (end > now) {
        throw ApplicationFailure.create({ type: 'PeriodOpen', message: `period ${input.period} ends at ${end.toISOString()}; it cannot be closed yet`, nonRetryable: true });
      }
      const r = await issueInvoice(deps.db, { tenantId: input.tenantId, period: input.period, workflowId: input.workflowId, closedAt: now, sla: input.sla ?? null });
      if (!r.ok) throw ApplicationFailure.create({ type: 'NotFound' satisfies FailureType, message: `tenant ${input.tenantId} not found`, nonRetryable: true });
      // Audited once per tenant and period (keyed), also when a retry finds the invoice written.
      const credit = input.sla ? await getSlaCredit(deps.db, input.tenantId, input.period) : null;
      if (credit) {
        await appendAudit(deps.db, {
          actor: 'system:billing', tenantId: input.tenantId, action: 'invoice.sla_credit', target: `invoice:${r.invoice.id}`,
          data: { period: input.period, plan: credit.plan, eligible: credit.eligible, good: credit.good, target_ppm: credit.target_ppm, credit_bps: credit.credit_bps, charges_micros: credit.charges_micros, credit_micros: credit.credit_micros, adjustment_id: credit.adjustment_id },
          idempotencyKey: `sla-credit:${input.tenantId}:${input.period}`, at: now,
        });
      }
      if (r.created) deps.metrics?.invoicesIssued.inc({ period: input.period });
      return { invoiceId: r.invoice.id, version: r.invoice.version, created: r.created, totalMicros: r.invoice.total_micros, lateRows: r.invoice.late_rows };
    },

    /**
     * Closes a UTC day: each tenant's billable totals for it, written once. A day that has not
     * ended is refused (non-retryable `PeriodOpen`).
     */
    async closeDay(input: { day: string; tenantId: string | null; workflowId: string }): Promise<{ created: number; tenants: number }> {
      const { end } = dayRange(input.day);
      if (end > deps.now()) {
        throw ApplicationFailure.create({ type: 'PeriodOpen', message: `day ${input.day} ends at ${end.toISOString()}; it cannot be closed yet`, nonRetryable: true });
      }
      return closeDay(deps.db, input);
    },

    /**
     * Checks a closed day against the ledger now (see `reconcileDay`). A mismatch counts in
     * `sluice_billing_reconciliation_failures_total` (period = the day's month) and fails
     * non-retryably with the findings.
     */
    async reconcileDay(input: { day: string; tenantId: string | null }): Promise<{ tenants: number }> {
      const r = await reconcileDay(deps.db, input.day, input.tenantId);
      if (!r.ok) {
        deps.metrics?.billingReconciliationFailures.inc({ period: input.day.slice(0, 7) });
        deps.metrics?.reconciliationMismatches.inc({ check: 'billing_day' });
        throw ApplicationFailure.create({
          type: 'ReconciliationMismatch',
          message: `day ${input.day} does not reconcile with the ledger: ${r.problems.join('; ')}`,
          nonRetryable: true,
          details: [r],
        });
      }
      return { tenants: r.tenants };
    },

    /**
     * Reconciles an invoice against the live ledger (see `reconcileInvoice`). A mismatch counts in
     * `sluice_billing_reconciliation_failures_total` and fails non-retryably with the findings.
     */
    async reconcileInvoice(input: { invoiceId: string }): Promise<{ ledgerMicros: number; totalMicros: number }> {
      const r = await reconcileInvoice(deps.db, input.invoiceId);
      if (!r) throw ApplicationFailure.create({ type: 'NotFound' satisfies FailureType, message: `invoice ${input.invoiceId} not found`, nonRetryable: true });
      if (!r.ok) {
        const inv = await getInvoice(deps.db, input.invoiceId);
        deps.metrics?.billingReconciliationFailures.inc({ period: inv?.period ?? 'unknown' });
        deps.metrics?.reconciliationMismatches.inc({ check: 'billing_invoice' });
        throw ApplicationFailure.create({
          type: 'ReconciliationMismatch',
          message: `invoice ${input.invoiceId} does not reconcile with the ledger: ${r.problems.join('; ')}`,
          nonRetryable: true,
          details: [r],
        });
      }
      return { ledgerMicros: r.ledgerMicros, totalMicros: r.totalMicros };
    },
  };
}
