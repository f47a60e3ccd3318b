/** The catalogue: models, the deployments serving them, and their effective-dated list prices. */
import type { Generated, Insertable, Selectable } from 'kysely';
import type { CreatedAt, Timestamp } from './columns.js';

export type Provider = 'llama-cpp' | 'openai-compatible' | 'instant';

/** What a model serves (migration 2026-12-01-0201-embeddings). */
export type ModelKind = 'chat' | 'embeddings';

export interface ModelsTable {
  id: string;
  owned_by: Generated<string>;
  context_length: number;
  max_output_tokens: number;
  /** What the model serves: chat (and batch) completions, or `/v1/embeddings`. */
  kind: Generated<ModelKind>;
  /** An embeddings model that may return fewer `dimensions` than its native size. */
  accepts_dimensions: Generated<boolean>;
  /** Price of a response-cache hit, micro-USD per million tokens of the cached response (migration 0402). */
  cache_micros_per_mtok: Generated<number>;
  /** Life of cache entries of this model, seconds; null = the server default (a tenant's TTL wins). */
  cache_ttl_seconds: Generated<number | null>;
  created_at: CreatedAt;
}

export interface DeploymentsTable {
  id: string;
  model_id: string;
  pool: string;
  provider: Provider;
  gguf_path: string | null;
  base_url: string | null;
  api_key_ref: string | null;
  upstream_model: string | null;
  weight: Generated<number>;
  priority: Generated<number>;
  status: Generated<'active' | 'disabled'>;
  created_at: CreatedAt;
}

export interface PricesTable {
  id: Generated<number>;
  deployment_id: string;
  input_micros_per_mtok: number;
  output_micros_per_mtok: number;
  effective_from: Timestamp;
  /** Flat fee per billable request, micro-USD. */
  request_micros: Generated<number>;
  /** Discount on `batch` usage, basis points (0-10000). */
  batch_discount_bps: Generated<number>;
}

/** The catalogue tables of `Database`. */
export interface ModelTables {
  models: ModelsTable;
  deployments: DeploymentsTable;
  prices: PricesTable;
}

export type Model = Selectable<ModelsTable>;
export type Deployment = Selectable<DeploymentsTable>;
export type NewDeployment = Insertable<DeploymentsTable>;
export type Price = Selectable<PricesTable>;
