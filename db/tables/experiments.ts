/**
 * Experiments: each one's lifecycle, window, allocation and targeting, its weighted variants (with
 * their overrides), the exposures assigned, and the feedback sent on completions (migration 0401).
 */
import type { ColumnType, Generated, Selectable } from 'kysely';
import type { VariantOverrides } from '../../domain/sampling-params.js';
import type { ExperimentStatus } from '../../domain/experiment-lifecycle.js';
import type { CreatedAt, NullableTimestamp, UpdatedAt } from './columns.js';

export type { VariantOverrides, ExperimentStatus };

export interface ExperimentsTable {
  id: string;
  name: string;
  model: string;
  tenant_id: string | null;
  status: Generated<ExperimentStatus>;
  created_at: CreatedAt;
  starts_at: NullableTimestamp;
  ends_at: NullableTimestamp;
  /** Share of eligible requests that enter, 0..1. */
  traffic_allocation: Generated<number>;
  /** Only requests of these keys enter (null: every key). */
  target_key_ids: ColumnType<string[] | null, string[] | null | undefined, string[] | null>;
  /** Only requests whose metadata meets this rule enter (domain/experiment-targeting.ts; null: all). */
  target_metadata: ColumnType<Record<string, string | string[]> | null, string | null | undefined, string | null>;
  /** The variant others are compared with (null: the first by name). */
  control_variant: ColumnType<string | null, string | null | undefined, string | null>;
  promoted_variant: ColumnType<string | null, string | null | undefined, string | null>;
  promoted_at: NullableTimestamp;
  updated_at: UpdatedAt;
}

export interface ExperimentVariantsTable {
  experiment_id: string;
  name: string;
  weight: number;
  overrides: ColumnType<VariantOverrides, string, string>;
}

export interface ExperimentExposuresTable {
  request_id: string;
  experiment_id: string;
  tenant_id: string;
  subject: string;
  variant: string;
  created_at: CreatedAt;
}

export type FeedbackKind = 'boolean' | 'score' | 'comment';

/** Feedback on a completion: one row per (tenant, request, metric); the last value sent wins. */
export interface FeedbackTable {
  id: string;
  tenant_id: string;
  request_id: string;
  /** The key that sent it (last). */
  key_id: string;
  metric: string;
  kind: FeedbackKind;
  value_bool: boolean | null;
  value_num: number | null;
  comment: string | null;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

/** The experiment tables of `Database`. */
export interface ExperimentTables {
  experiments: ExperimentsTable;
  experiment_variants: ExperimentVariantsTable;
  experiment_exposures: ExperimentExposuresTable;
  feedback: FeedbackTable;
}

export type ExperimentRow = Selectable<ExperimentsTable>;
export type FeedbackRow = Selectable<FeedbackTable>;
