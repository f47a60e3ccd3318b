/** Inputs and outputs of the billing and day-close workflows. Pure types. */

export interface DayCloseInput {
  /** Null: the day before the workflow's start (what the schedule passes). */
  day: string | null;
  /** Null: every tenant with usage that day. */
  tenantId: string | null;
}

export interface DayCloseOutput {
  day: string;
  /** Closes written by this run (0 on a re-run). */
  created: number;
  /** Tenants whose day is closed, in all. */
  tenants: number;
}

export interface BillingInput {
  tenantId: string;
  period: string;
}

export interface BillingOutput {
  invoiceId: string;
  version: number;
  /** False when the invoice already existed (a re-run): nothing was written. */
  created: boolean;
  totalMicros: number;
  lateRows: number;
}

export interface BillingRunInput {
  /** Null: the month before the run's start (what the schedule passes). */
  period: string | null;
  /** Null: every billable tenant. */
  tenantIds: string[] | null;
}

export interface BillingRunOutput {
  period: string;
  invoices: Array<{ tenantId: string; invoiceId: string; created: boolean; totalMicros: number }>;
  failures: Array<{ tenantId: string; message: string }>;
}

/**
 * A tenant's SLA measured over a closed period (`measureSla`, behind `patched('sla-credits')`),
 * handed to the close that writes the credit. Targets and thresholds in parts per million,
 * credits in basis points of the period's charges.
 */
export interface SlaMeasurement {
  plan: string;
  targetPpm: number;
  tiers: { belowPpm: number; creditBps: number }[];
  /** Requests that count for availability (client 4xx and cancels left out). */
  eligible: number;
  /** Of those, the ones that succeeded. */
  good: number;
}
