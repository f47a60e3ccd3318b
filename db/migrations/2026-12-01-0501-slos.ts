/**
 * SLOs and SLAs (issue 16): what the SLIs need, on the request rows themselves (`latency_ms`
 * accepted → terminal, `ttft_ms` accepted → first stream chunk stored, `failure_type` the
 * `ApplicationFailure` type a failed request ended with, `pool` of the deployment that served or
 * last tried it), written by the same statement that records the outcome; the SLO definitions
 * (`slos`); the SLA a tenant plan carries (`plan_slas`: target and credit tiers); and the SLA
 * credit computed once per tenant and period (`sla_credits`, pointing at its ledger adjustment).
 * Targets and tier thresholds are parts per million (integers, compared exactly); credit rates
 * are basis points of the period's charges.
 * Frozen in time: uses Kysely<any> and imports nothing of the app.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table requests
    add column latency_ms integer,
    add column ttft_ms integer,
    add column failure_type text,
    add column pool text`.execute(db);
  // The SLO queries read finished requests of a time range: an index-only scan of this one.
  await sql`create index requests_sli_idx on requests (created_at)
    include (tenant_id, model, pool, status, failure_type, latency_ms, ttft_ms) where finished_at is not null`.execute(db);
  await sql`create index batches_created_idx on batches (created_at)`.execute(db);

  await sql`
    create table slos (
      id text primary key,
      name text not null,
      kind text not null check (kind in ('availability', 'latency_p95', 'latency_p99', 'ttft_p95', 'ttft_p99', 'batch_window')),
      scope_type text not null check (scope_type in ('model', 'pool', 'plan')),
      scope_value text not null,
      target_ppm integer not null check (target_ppm > 0 and target_ppm < 1000000),
      slo_window text not null check (slo_window in ('30d', 'calendar_month')),
      threshold_ms integer check (threshold_ms > 0),
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      check ((kind in ('availability', 'batch_window')) = (threshold_ms is null))
    )`.execute(db);

  await sql`
    create table plan_slas (
      plan text primary key,
      target_ppm integer not null check (target_ppm > 0 and target_ppm < 1000000),
      tiers jsonb not null,
      updated_at timestamptz not null default now()
    )`.execute(db);

  await sql`
    create table sla_credits (
      tenant_id text not null references tenants (id),
      period text not null,
      plan text not null,
      target_ppm integer not null,
      eligible bigint not null,
      good bigint not null,
      credit_bps integer not null check (credit_bps > 0 and credit_bps <= 10000),
      charges_micros bigint not null,
      credit_micros bigint not null check (credit_micros >= 0),
      adjustment_id bigint not null references usage_adjustments (id),
      created_at timestamptz not null default now(),
      primary key (tenant_id, period)
    )`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table if exists sla_credits`.execute(db);
  await sql`drop table if exists plan_slas`.execute(db);
  await sql`drop table if exists slos`.execute(db);
  await sql`drop index if exists batches_created_idx`.execute(db);
  await sql`drop index if exists requests_sli_idx`.execute(db);
  await sql`alter table requests drop column if exists latency_ms, drop column if exists ttft_ms,
    drop column if exists failure_type, drop column if exists pool`.execute(db);
}
