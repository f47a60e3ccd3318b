/**
 * Experiments that can be learnt from (issue 15): a lifecycle (`draft → running ⇄ paused →
 * stopped`) with an optional window (`starts_at`, `ends_at`), the share of eligible requests that
 * enter (`traffic_allocation`), targeting by key and request metadata, the control variant, the
 * variant promoted to the model's default; an index that lets results aggregate one experiment's
 * exposures by variant; and `feedback`: one row per (tenant, request, metric), a boolean, a score
 * or a comment.
 * Frozen in time: uses Kysely<any> and imports nothing of the app.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table experiments drop constraint if exists experiments_status_check`.execute(db);
  await sql`
    alter table experiments
      add constraint experiments_status_check check (status in ('draft', 'running', 'paused', 'stopped')),
      add column starts_at timestamptz,
      add column ends_at timestamptz,
      add column traffic_allocation double precision not null default 1
        check (traffic_allocation >= 0 and traffic_allocation <= 1),
      add column target_key_ids text[],
      add column target_metadata jsonb,
      add column control_variant text,
      add column promoted_variant text,
      add column promoted_at timestamptz,
      add column updated_at timestamptz not null default now()`.execute(db);
  await sql`create index experiments_model_status_idx on experiments (model, status)`.execute(db);
  await sql`create index experiment_exposures_experiment_idx on experiment_exposures (experiment_id, variant)`.execute(db);
  await sql`
    create table feedback (
      id text primary key,
      tenant_id text not null references tenants(id),
      request_id text not null,
      key_id text not null,
      metric text not null,
      kind text not null check (kind in ('boolean', 'score', 'comment')),
      value_bool boolean,
      value_num double precision,
      comment text,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      constraint feedback_request_metric_uq unique (tenant_id, request_id, metric),
      constraint feedback_value_ck check (
        (kind = 'boolean' and value_bool is not null and value_num is null and comment is null) or
        (kind = 'score' and value_num is not null and value_bool is null and comment is null) or
        (kind = 'comment' and comment is not null and value_bool is null and value_num is null))
    )`.execute(db);
  await sql`create index feedback_request_idx on feedback (request_id)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop table feedback`.execute(db);
  await sql`drop index experiment_exposures_experiment_idx`.execute(db);
  await sql`drop index experiments_model_status_idx`.execute(db);
  await sql`update experiments set status = 'stopped' where status in ('draft', 'paused')`.execute(db);
  await sql`
    alter table experiments
      drop constraint experiments_status_check,
      drop column starts_at, drop column ends_at, drop column traffic_allocation, drop column target_key_ids,
      drop column target_metadata, drop column control_variant, drop column promoted_variant,
      drop column promoted_at, drop column updated_at,
      add constraint experiments_status_check check (status in ('running', 'stopped'))`.execute(db);
}
