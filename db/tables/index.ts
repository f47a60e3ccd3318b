/**
 * The database as Kysely sees it. `bigint` columns are parsed to `number` by the pool created in
 * `db/database.ts` (safe up to 2^53: 9 billion USD in micro-units).
 */
import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';
import type { Role } from '../../domain/policy.js';
import type { VariantOverrides } from '../../domain/sampling-params.js';
import type { JobStatus, RequestKind } from '../../contracts/chat.js';

export type { RequestKind, Role, VariantOverrides };

type Timestamp = ColumnType<Date, Date | string, Date | string>;
type CreatedAt = ColumnType<Date, Date | string | undefined, never>;

export type TenantStatus = 'active' | 'suspended';
export type Provider = 'llama-cpp' | 'openai-compatible' | 'instant';
/** A request's status column: the job status clients read. */
export type RequestStatus = JobStatus;
export type ReservationStatus = 'held' | 'settled' | 'released';
export type CircuitStateName = 'closed' | 'open' | 'half_open';

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
  erased_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  created_at: CreatedAt;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
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

export interface ModelsTable {
  id: string;
  owned_by: Generated<string>;
  context_length: number;
  max_output_tokens: number;
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
}

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

export interface AuditLogTable {
  seq: number;
  created_at: Timestamp;
  actor: string;
  tenant_id: string | null;
  action: string;
  target: string | null;
  data: ColumnType<Record<string, unknown>, string, never>;
  idempotency_key: string | null;
  prev_hash: string;
  hash: string;
}

export interface AuditHeadTable {
  id: number;
  seq: number;
  hash: string;
}

/** A checkpoint of the audit chain: its head at `seq`, HMAC-signed when a key is configured. */
export interface AuditCheckpointsTable {
  seq: number;
  head_hash: string;
  signature: string | null;
  created_at: CreatedAt;
}

export interface CircuitStateTable {
  deployment_id: string;
  state: CircuitStateName;
  failures: number;
  window_started_at: Timestamp;
  opened_at: Timestamp | null;
  probe_started_at: Timestamp | null;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export type FilePurpose = 'batch' | 'batch_output';
export type BatchStatus = 'validating' | 'failed' | 'in_progress' | 'finalizing' | 'completed' | 'expired' | 'cancelling' | 'cancelled';

export interface FilesTable {
  id: string;
  tenant_id: string;
  purpose: FilePurpose;
  filename: string;
  bytes: number;
  line_count: number;
  trailing_newline: boolean;
  created_at: CreatedAt;
  /** When the content (`file_lines`) was purged by retention or erasure; the row stays. */
  content_purged_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface FileLinesTable {
  file_id: string;
  /** 1-based line number in the file. */
  line_no: number;
  content: string;
}

/** One validation error of a batch input line, as OpenAI reports it in `errors.data`. */
export interface BatchLineError {
  code: string;
  message: string;
  param: string | null;
  line: number | null;
}

export interface BatchesTable {
  id: string;
  tenant_id: string;
  key_id: string;
  endpoint: string;
  input_file_id: string;
  completion_window: string;
  status: BatchStatus;
  output_file_id: string | null;
  error_file_id: string | null;
  errors: ColumnType<BatchLineError[] | null, string | null, string | null>;
  metadata: ColumnType<Record<string, string> | null, string | null, string | null>;
  model: string | null;
  estimated_cost_micros: number | null;
  total: Generated<number>;
  completed: Generated<number>;
  failed: Generated<number>;
  created_at: CreatedAt;
  expires_at: Timestamp;
  in_progress_at: Timestamp | null;
  finalizing_at: Timestamp | null;
  completed_at: Timestamp | null;
  failed_at: Timestamp | null;
  expired_at: Timestamp | null;
  cancelling_at: Timestamp | null;
  cancelled_at: Timestamp | null;
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

export type WebhookEndpointStatus = 'active' | 'disabled';
export type WebhookDeliveryStatus = 'pending' | 'succeeded' | 'failed';

/** Webhooks (migration 0006). `secret` is `whsec_…`: needed to sign, so stored; never logged or returned after creation. */
export interface WebhookEndpointsTable {
  id: string;
  tenant_id: string;
  url: string;
  events: string[];
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: Timestamp | null;
  status: Generated<WebhookEndpointStatus>;
  disabled_reason: string | null;
  created_at: CreatedAt;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
}

export interface WebhookEventsTable {
  id: string;
  tenant_id: string;
  type: string;
  /** The exact JSON body sent on every attempt. */
  body: string;
  created_at: CreatedAt;
}

export interface WebhookDeliveriesTable {
  id: string;
  event_id: string;
  endpoint_id: string;
  tenant_id: string;
  status: Generated<WebhookDeliveryStatus>;
  attempts: Generated<number>;
  last_status_code: number | null;
  last_error: string | null;
  created_at: CreatedAt;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
  delivered_at: Timestamp | null;
}

/** Finance (migration 0004): negotiated rates, plan rates, adjustments, invoices. */
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

export interface Database {
  tenants: TenantsTable;
  api_keys: ApiKeysTable;
  models: ModelsTable;
  deployments: DeploymentsTable;
  prices: PricesTable;
  requests: RequestsTable;
  reservations: ReservationsTable;
  quota_counters: QuotaCountersTable;
  tenant_spend: TenantSpendTable;
  usage: UsageTable;
  experiments: ExperimentsTable;
  experiment_variants: ExperimentVariantsTable;
  experiment_exposures: ExperimentExposuresTable;
  audit_log: AuditLogTable;
  audit_head: AuditHeadTable;
  circuit_state: CircuitStateTable;
  tenant_prices: TenantPricesTable;
  plan_rates: PlanRatesTable;
  usage_adjustments: UsageAdjustmentsTable;
  invoices: InvoicesTable;
  day_closes: DayClosesTable;
  invoice_lines: InvoiceLinesTable;
  billing_claims: BillingClaimsTable;
  audit_checkpoints: AuditCheckpointsTable;
  files: FilesTable;
  file_lines: FileLinesTable;
  batches: BatchesTable;
  budget_events: BudgetEventsTable;
  webhook_endpoints: WebhookEndpointsTable;
  webhook_events: WebhookEventsTable;
  webhook_deliveries: WebhookDeliveriesTable;
}

export type Tenant = Selectable<TenantsTable>;
export type NewTenant = Insertable<TenantsTable>;
export type TenantUpdate = Updateable<TenantsTable>;
export type ApiKey = Selectable<ApiKeysTable>;
export type NewApiKey = Insertable<ApiKeysTable>;
export type Model = Selectable<ModelsTable>;
export type Deployment = Selectable<DeploymentsTable>;
export type NewDeployment = Insertable<DeploymentsTable>;
export type Price = Selectable<PricesTable>;
export type RequestRow = Selectable<RequestsTable>;
export type Reservation = Selectable<ReservationsTable>;
export type UsageRow = Selectable<UsageTable>;
export type AuditRow = Selectable<AuditLogTable>;
export type CircuitRow = Selectable<CircuitStateTable>;
export type FileRow = Selectable<FilesTable>;
export type BatchRow = Selectable<BatchesTable>;
export type BudgetEvent = Selectable<BudgetEventsTable>;
export type WebhookEndpoint = Selectable<WebhookEndpointsTable>;
export type WebhookEvent = Selectable<WebhookEventsTable>;
export type WebhookDelivery = Selectable<WebhookDeliveriesTable>;
export type Invoice = Selectable<InvoicesTable>;
export type InvoiceLine = Selectable<InvoiceLinesTable>;
export type UsageAdjustment = Selectable<UsageAdjustmentsTable>;
