/** Experiments: each one's weighted variants (with their sampling overrides) and the exposures assigned. */
import type { ColumnType, Generated } from 'kysely';
import type { VariantOverrides } from '../../domain/sampling-params.js';
import type { CreatedAt } from './columns.js';

export type { VariantOverrides };

export interface ExperimentsTable {
  id: string;
  name: string;
  model: string;
  tenant_id: string | null;
  status: Generated<'running' | 'stopped'>;
  created_at: CreatedAt;
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

/** The experiment tables of `Database`. */
export interface ExperimentTables {
  experiments: ExperimentsTable;
  experiment_variants: ExperimentVariantsTable;
  experiment_exposures: ExperimentExposuresTable;
}
