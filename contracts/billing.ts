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
