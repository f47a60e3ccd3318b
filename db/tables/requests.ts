/**
 * A request's life in the database: the request row, its quota (per-minute counters, the
 * reservation, the tenant's monthly spend and budget thresholds crossed), the usage ledger it
 * settles into (one row per request and step), and the circuit state of the deployments it runs on.
 */
import type { ColumnType, Generated, Selectable } from 'kysely';
import type { RequestKind } from '../../contracts/chat.js';
import type { CreatedAt, Timestamp, UpdatedAt } from './columns.js';

export type { RequestKind };

/** A nullable column added by a later migration: omitted on insert means null. */
type NullableColumn<T> = ColumnType<T | null, T | null | undefined, T | null>;

export type RequestStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export type ReservationStatus = 'held' | 'settled' | 'released';
export type CircuitStateName = 'closed' | 'open' | 'half_open';

export interface RequestsTable {
  id: string;
  tenant_id: string;
  key_id: string;
  kind: RequestKind;
  model: string;
  idempotency_key: string | null;
  body_hash: string;
  status: Generated<RequestStatus>;
  result: unknown | null;
  error: unknown | null;
  created_at: CreatedAt;
  finished_at: Timestamp | null;
  /** `hit`: answered from the response cache; `miss`: looked up, generated; null: not consulted (migration 0402). */
  cache: Generated<'hit' | 'miss' | null>;
  /** Accepted (`created_at`) → terminal, ms; written with the outcome (migration 0501). */
  latency_ms: NullableColumn<number>;
  /** Streams: accepted → the first chunk stored, ms; null for a request that streamed nothing. */
  ttft_ms: NullableColumn<number>;
  /** The `ApplicationFailure` type a failed or cancelled request ended with. */
  failure_type: NullableColumn<string>;
  /** The pool of the deployment that served the request (or last tried it), when one did. */
  pool: NullableColumn<string>;
}

/** A request answered 5xx because its workflow could not be started (migration 0651): the availability SLI counts it failed. */
export interface RequestStartFailuresTable {
  id: Generated<number>;
  request_id: string;
  tenant_id: string;
  /** The request's kind, as `requests.kind` would have held it (sync, async). */
  kind: string;
  model: string;
  /** The error `code` answered: `temporal_unavailable` (503) or `internal_error` (500). */
  code: string;
  status: number;
  created_at: CreatedAt;
}

export interface ReservationsTable {
  request_id: string;
  tenant_id: string;
  window_start: Timestamp;
  period: string;
  est_tokens: number;
  est_cost_micros: number;
  status: ReservationStatus;
  created_at: CreatedAt;
  closed_at: Timestamp | null;
}

export interface QuotaCountersTable {
  tenant_id: string;
  window_start: Timestamp;
  requests: Generated<number>;
  tokens: Generated<number>;
}

export interface TenantSpendTable {
  tenant_id: string;
  period: string;
  spent_micros: Generated<number>;
  reserved_micros: Generated<number>;
}

/** Budget thresholds crossed (migration 0006): one row per tenant, period and threshold. */
export interface BudgetEventsTable {
  id: Generated<number>;
  tenant_id: string;
  period: string;
  threshold_pct: number;
  budget_micros: number;
  committed_micros: number;
  request_id: string | null;
  created_at: CreatedAt;
}

/**
 * The usage ledger: one row per (request, step). Written only by `db/repositories/quota.ts`
 * from a `UsageInput`, itself the workflow's `UsageEntry` (contracts/chat.ts) once priced.
 */
export interface UsageTable {
  id: Generated<number>;
  request_id: string;
  step: string;
  tenant_id: string;
  key_id: string;
  kind: RequestKind;
  model: string;
  deployment_id: string;
  pool: string;
  variant: string | null;
  price_id: number | null;
  input_tokens: number;
  output_tokens: number;
  cost_micros: number;
  latency_ms: number;
  billable: Generated<boolean>;
  created_at: CreatedAt;
  /** The tenant's negotiated price used instead of the list price, if any. */
  tenant_price_id: Generated<number | null>;
  /** Answered from the response cache: priced at the model's cache price (migration 0402). */
  cached: Generated<boolean>;
}

export interface CircuitStateTable {
  deployment_id: string;
  state: CircuitStateName;
  failures: number;
  window_started_at: Timestamp;
  opened_at: Timestamp | null;
  probe_started_at: Timestamp | null;
  updated_at: UpdatedAt;
}

/** The request, quota, ledger and circuit tables of `Database`. */
export interface RequestTables {
  requests: RequestsTable;
  request_start_failures: RequestStartFailuresTable;
  reservations: ReservationsTable;
  quota_counters: QuotaCountersTable;
  tenant_spend: TenantSpendTable;
  budget_events: BudgetEventsTable;
  usage: UsageTable;
  circuit_state: CircuitStateTable;
}

export type RequestRow = Selectable<RequestsTable>;
export type Reservation = Selectable<ReservationsTable>;
export type BudgetEvent = Selectable<BudgetEventsTable>;
export type UsageRow = Selectable<UsageTable>;
export type CircuitRow = Selectable<CircuitStateTable>;
