/** Tenancy: tenants (limits, plan, retention) and their API keys (prefix + hash, never the secret). */
import type { Generated, Insertable, Selectable, Updateable } from 'kysely';
import type { Role } from '../../domain/policy.js';
import type { CreatedAt, NullableTimestamp, Timestamp, UpdatedAt } from './columns.js';

export type { Role };

export type TenantStatus = 'active' | 'suspended';

export interface TenantsTable {
  id: string;
  name: string;
  plan: Generated<string>;
  status: Generated<TenantStatus>;
  requests_per_minute: number | null;
  tokens_per_minute: number | null;
  max_concurrent: number | null;
  monthly_budget_micros: number | null;
  allowed_models: string[] | null;
  /** Stored prompts and outputs older than this many days are purged; null = kept. */
  retention_days: Generated<number | null>;
  /** When the tenant's stored content was erased (`POST /v1/admin/tenants/{id}/erase`). */
  erased_at: NullableTimestamp;
  /** Deterministic requests are answered from the response cache (migration 0402). */
  cache_enabled: Generated<boolean>;
  /** Life of the tenant's cache entries, seconds; null = the model's, else the server default. */
  cache_ttl_seconds: Generated<number | null>;
  /** Bumped by every cache invalidation and erase: in-process copies older than it are dropped. */
  cache_generation: Generated<number>;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

export interface ApiKeysTable {
  id: string;
  tenant_id: string | null;
  name: string | null;
  prefix: string;
  hash: string;
  role: Role;
  scopes: string[] | null;
  expires_at: Timestamp | null;
  revoked_at: Timestamp | null;
  last_used_at: Timestamp | null;
  created_at: CreatedAt;
}

/** The tenancy tables of `Database`. */
export interface TenancyTables {
  tenants: TenantsTable;
  api_keys: ApiKeysTable;
}

export type Tenant = Selectable<TenantsTable>;
export type NewTenant = Insertable<TenantsTable>;
export type TenantUpdate = Updateable<TenantsTable>;
export type ApiKey = Selectable<ApiKeysTable>;
export type NewApiKey = Insertable<ApiKeysTable>;
