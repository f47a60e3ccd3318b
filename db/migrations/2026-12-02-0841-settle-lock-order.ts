/**
 * `sluice_settle` takes its rows' locks in the order every other ledger function takes them:
 * the reservation, then the tenant's `quota_counters` row, then its `tenant_spend` row.
 * `sluice_reserve` (0008) and `sluice_reserve_many` / `sluice_settle_many` (0831) and
 * `sluice_settle_part` (0701) write the counters before the spend; `sluice_settle` (0008) wrote
 * the spend first, so a request's settle and another request's reserve of the same tenant in the
 * same minute could each hold the row the other waits for (a deadlock PostgreSQL breaks by
 * aborting one; the activity's retry then succeeds, after `deadlock_timeout`). Since 0811 the
 * settle runs inside `sluice_complete`'s longer transaction, so the window grew. Same answers and
 * writes as 0008's: only the order of the two updates changed (the budget check reads the spend
 * row's own upsert, which the counters do not touch). `release` (db/repositories/quota.ts) has the
 * same order.
 * Frozen in time: Kysely<any>, no app imports; a later change is a new migration.
 */
import { sql, type Kysely } from 'kysely';
import { up as quotaFunctions } from './2026-11-22-0008-quota-functions.js';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create or replace function sluice_settle(
      p_request_id text, p_step text, p_tenant_id text, p_key_id text, p_kind text, p_model text,
      p_deployment_id text, p_pool text, p_variant text, p_price_id bigint, p_tenant_price_id bigint,
      p_at timestamptz, p_input_tokens integer, p_output_tokens integer, p_cost bigint, p_latency_ms integer,
      p_fallback_period text, p_thresholds integer[]
    ) returns table (cost_micros bigint, inserted boolean, budget_events boolean) language plpgsql as $fn$
    #variable_conflict use_column
    declare
      res reservations%rowtype;
      stored bigint;
      v_period text;
      budget bigint;
      committed bigint;
    begin
      select * into res from reservations r where r.request_id = p_request_id for update;
      insert into usage (request_id, step, tenant_id, key_id, kind, model, deployment_id, pool, variant, price_id,
                         tenant_price_id, created_at, input_tokens, output_tokens, cost_micros, latency_ms, billable)
        values (p_request_id, p_step, p_tenant_id, p_key_id, p_kind, p_model, p_deployment_id, p_pool, p_variant, p_price_id,
                p_tenant_price_id, coalesce(p_at, now()), p_input_tokens, p_output_tokens, p_cost, p_latency_ms, true)
        on conflict (request_id, step) do nothing;
      if not found then
        select u.cost_micros into stored from usage u where u.request_id = p_request_id and u.step = p_step;
        return query select stored, false, true;
        return;
      end if;
      v_period := coalesce(res.period, p_fallback_period);
      if res.status = 'held' then
        update reservations set status = 'settled', closed_at = now() where request_id = p_request_id;
        update quota_counters set tokens = greatest(0, tokens + (p_input_tokens + p_output_tokens) - res.est_tokens)
          where tenant_id = p_tenant_id and window_start = res.window_start;
      end if;
      insert into tenant_spend (tenant_id, period, spent_micros, reserved_micros)
        values (p_tenant_id, v_period, p_cost, case when res.status = 'held' then -res.est_cost_micros else 0 end)
        on conflict (tenant_id, period) do update set
          spent_micros = tenant_spend.spent_micros + excluded.spent_micros,
          reserved_micros = tenant_spend.reserved_micros + excluded.reserved_micros
        returning tenant_spend.spent_micros + tenant_spend.reserved_micros into committed;
      select monthly_budget_micros into budget from tenants where id = p_tenant_id;
      return query select p_cost, true,
        budget is not null and sluice_record_budget_thresholds(p_tenant_id, v_period, budget, committed, p_request_id, p_thresholds);
    end
    $fn$`.execute(db);
}

/** 0008's order back: its functions again (`create or replace`, nothing else in its up). */
export async function down(db: Kysely<any>): Promise<void> {
  await quotaFunctions(db);
}
