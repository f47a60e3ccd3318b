/**
 * Finance (migrations 0004, 0007): negotiated tenant rates, plan rates, adjustments, invoices and
 * their lines, the claims that bill each usage or adjustment row once, and closed days.
 */
import type { ColumnType, Generated, Selectable } from 'kysely';
import type { RequestKind } from './requests.js';
import type { CreatedAt, Timestamp } from './columns.js';

export interface TenantPricesTable {
  id: Generated<number>;
  tenant_id: string;
  deployment_id: string;
  input_micros_per_mtok: number;
  output_micros_per_mtok: number;
  request_micros: Generated<number>;
  effective_from: Timestamp;
  created_at: CreatedAt;
}

export interface PlanRatesTable {
  plan: string;
  /** Markup (> 0) or discount (< 0) on usage, basis points. */
  adjustment_bps: number;
  effective_from: Timestamp;
  created_at: CreatedAt;
}

export interface UsageAdjustmentsTable {
  id: Generated<number>;
  tenant_id: string;
  usage_id: number | null;
  /** Signed: a credit is negative. */
  amount_micros: number;
  reason: string;
  actor: string;
  effective_at: Timestamp;
  idempotency_key: string | null;
  created_at: CreatedAt;
}

export type InvoiceStatus = 'issued' | 'void';

export interface InvoicesTable {
  id: string;
  tenant_id: string;
  period: string;
  version: number;
  status: InvoiceStatus;
  currency: Generated<string>;
  period_start: Timestamp;
  period_end: Timestamp;
  closed_at: Timestamp;
  plan: string;
  plan_adjustment_bps: number;
  usage_rows: number;
  usage_micros: number;
  plan_adjustment_micros: number;
  adjustments_micros: number;
  total_micros: number;
  late_rows: number;
  late_micros: number;
  workflow_id: string;
  replaces_invoice_id: string | null;
  voided_at: Timestamp | null;
  voided_by: string | null;
  void_reason: string | null;
  created_at: CreatedAt;
}

export interface InvoiceLinesTable {
  id: Generated<number>;
  invoice_id: string;
  kind: RequestKind | 'adjustment';
  model: string | null;
  deployment_id: string | null;
  key_id: string | null;
  variant: string | null;
  /** The period the usage happened in; differs from the invoice's for late usage. */
  usage_period: string;
  late: boolean;
  description: string | null;
  requests: number;
  input_tokens: number;
  output_tokens: number;
  usage_micros: number;
  amount_micros: number;
}

/** A tenant's billable ledger totals for one UTC day, as closed (`day` is a PostgreSQL date: select it with to_char). */
export interface DayClosesTable {
  tenant_id: string;
  day: ColumnType<Date, string, never>;
  rows: number;
  input_tokens: number;
  output_tokens: number;
  cost_micros: number;
  workflow_id: string;
  closed_at: CreatedAt;
}

export interface BillingClaimsTable {
  source: 'usage' | 'adjustment';
  source_id: number;
  invoice_id: string;
}

/** The finance tables of `Database`. */
export interface BillingTables {
  tenant_prices: TenantPricesTable;
  plan_rates: PlanRatesTable;
  usage_adjustments: UsageAdjustmentsTable;
  invoices: InvoicesTable;
  invoice_lines: InvoiceLinesTable;
  billing_claims: BillingClaimsTable;
  day_closes: DayClosesTable;
}

export type Invoice = Selectable<InvoicesTable>;
export type InvoiceLine = Selectable<InvoiceLinesTable>;
export type UsageAdjustment = Selectable<UsageAdjustmentsTable>;
