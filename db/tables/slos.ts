/**
 * SLOs and SLAs (migration 0501): objective definitions, the SLA a tenant plan carries, and the
 * SLA credit written once per tenant and period. Targets and thresholds are parts per million.
 */
import type { ColumnType, Generated, Selectable } from 'kysely';
import type { SloKind, SloScopeType, SloWindow, SlaTier } from '../../domain/slo.js';
import type { CreatedAt, UpdatedAt } from './columns.js';

export interface SlosTable {
  id: string;
  name: string;
  kind: SloKind;
  scope_type: SloScopeType;
  scope_value: string;
  target_ppm: number;
  slo_window: SloWindow;
  /** Latency and TTFT kinds only: the bound a good request stays within. */
  threshold_ms: number | null;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

export interface PlanSlasTable {
  plan: string;
  target_ppm: number;
  /** Ordered from the highest threshold down (validated by `domain/slo.ts`). */
  tiers: ColumnType<SlaTier[], string, string>;
  updated_at: UpdatedAt;
}

export interface SlaCreditsTable {
  tenant_id: string;
  period: string;
  plan: string;
  target_ppm: number;
  eligible: number;
  good: number;
  credit_bps: number;
  charges_micros: number;
  credit_micros: number;
  adjustment_id: number;
  created_at: Generated<Date>;
}

/** The SLO tables of `Database`. */
export interface SloTables {
  slos: SlosTable;
  plan_slas: PlanSlasTable;
  sla_credits: SlaCreditsTable;
}

export type SloRow = Selectable<SlosTable>;
export type PlanSlaRow = Selectable<PlanSlasTable>;
export type SlaCreditRow = Selectable<SlaCreditsTable>;
