/**
 * Reserve and settle as one database round trip each: `sluice_reserve` and `sluice_settle`, the
 * same steps `db/repositories/quota.ts` ran as 8–11 statements in a transaction from Node (each a
 * round trip, ~0.1–0.3 ms of client CPU here). PL/pgSQL because each statement after the tenant's
 * row lock must see what the transactions it waited for committed (a new snapshot per statement
 * under READ COMMITTED), which one SQL statement with CTEs would not.
 * Frozen in time: Kysely<any>, no app imports; a later change is a new migration.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // Records each threshold (percent of the budget) that `committed` reaches, once per tenant,
  // period and threshold; true when any is reached (rows may then name this request).
  await sql`
    create or replace function sluice_record_budget_thresholds(
      p_tenant_id text, p_period text, p_budget bigint, p_committed bigint, p_request_id text, p_thresholds integer[]
    ) returns boolean language plpgsql as $fn$
    #variable_conflict use_column
    begin
      if p_budget <= 0 or not exists (select 1 from unnest(p_thresholds) pct where p_committed * 100 >= p_budget * pct) then
        return false;
      end if;
      insert into budget_events (tenant_id, period, threshold_pct, budget_micros, committed_micros, request_id)
        select p_tenant_id, p_period, pct, p_budget, p_committed, p_request_id
        from unnest(p_thresholds) pct where p_committed * 100 >= p_budget * pct order by pct
        on conflict (tenant_id, period, threshold_pct) do nothing;
      return true;
    end
    $fn$`.execute(db);

  // Admits a request against its tenant's limits and holds its estimate. outcome: 'ok',
  // 'tenant_missing' or the limit that refused; a second call for the same request returns the
  // first one's hold (budget_events true: what it crossed may still be waiting to be emitted).
  await sql`
    create or replace function sluice_reserve(
      p_request_id text, p_tenant_id text, p_est_tokens bigint, p_est_cost bigint,
      p_window timestamptz, p_period text, p_thresholds integer[]
    ) returns table (outcome text, est_cost_micros bigint, budget_events boolean) language plpgsql as $fn$
    #variable_conflict use_column
    declare
      t record;
      held_cost bigint;
      c_requests integer;
      c_tokens bigint;
      n_held bigint;
      committed bigint;
    begin
      select requests_per_minute, tokens_per_minute, max_concurrent, monthly_budget_micros into t
        from tenants where id = p_tenant_id for update;
      if not found then
        return query select 'tenant_missing'::text, null::bigint, false;
        return;
      end if;
      select r.est_cost_micros into held_cost from reservations r where r.request_id = p_request_id;
      if found then
        return query select 'ok'::text, held_cost, true;
        return;
      end if;
      select q.requests, q.tokens into c_requests, c_tokens
        from quota_counters q where q.tenant_id = p_tenant_id and q.window_start = p_window;
      if t.requests_per_minute is not null and coalesce(c_requests, 0) + 1 > t.requests_per_minute then
        return query select 'requests_per_minute'::text, null::bigint, false;
        return;
      end if;
      if t.tokens_per_minute is not null and coalesce(c_tokens, 0) + p_est_tokens > t.tokens_per_minute then
        return query select 'tokens_per_minute'::text, null::bigint, false;
        return;
      end if;
      if t.max_concurrent is not null then
        select count(*) into n_held from reservations r where r.tenant_id = p_tenant_id and r.status = 'held';
        if n_held >= t.max_concurrent then
          return query select 'max_concurrent'::text, null::bigint, false;
          return;
        end if;
      end if;
      if t.monthly_budget_micros is not null then
        select s.spent_micros + s.reserved_micros into committed
          from tenant_spend s where s.tenant_id = p_tenant_id and s.period = p_period;
        if coalesce(committed, 0) + p_est_cost > t.monthly_budget_micros then
          return query select 'monthly_budget'::text, null::bigint, false;
          return;
        end if;
      end if;

      insert into reservations (request_id, tenant_id, window_start, period, est_tokens, est_cost_micros, status)
        values (p_request_id, p_tenant_id, p_window, p_period, p_est_tokens, p_est_cost, 'held');
      insert into quota_counters (tenant_id, window_start, requests, tokens) values (p_tenant_id, p_window, 1, p_est_tokens)
        on conflict (tenant_id, window_start)
        do update set requests = quota_counters.requests + 1, tokens = quota_counters.tokens + excluded.tokens;
      insert into tenant_spend (tenant_id, period, spent_micros, reserved_micros) values (p_tenant_id, p_period, 0, p_est_cost)
        on conflict (tenant_id, period) do update set reserved_micros = tenant_spend.reserved_micros + excluded.reserved_micros
        returning tenant_spend.spent_micros + tenant_spend.reserved_micros into committed;
      return query select 'ok'::text, p_est_cost,
        t.monthly_budget_micros is not null
          and sluice_record_budget_thresholds(p_tenant_id, p_period, t.monthly_budget_micros, committed, p_request_id, p_thresholds);
    end
    $fn$`.execute(db);

  // Writes the usage row for (request, step) and settles the request's reservation, exactly once:
  // a second call inserts nothing and returns the stored row's cost (inserted false).
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
      insert into tenant_spend (tenant_id, period, spent_micros, reserved_micros)
        values (p_tenant_id, v_period, p_cost, case when res.status = 'held' then -res.est_cost_micros else 0 end)
        on conflict (tenant_id, period) do update set
          spent_micros = tenant_spend.spent_micros + excluded.spent_micros,
          reserved_micros = tenant_spend.reserved_micros + excluded.reserved_micros
        returning tenant_spend.spent_micros + tenant_spend.reserved_micros into committed;
      select monthly_budget_micros into budget from tenants where id = p_tenant_id;
      if res.status = 'held' then
        update reservations set status = 'settled', closed_at = now() where request_id = p_request_id;
        update quota_counters set tokens = greatest(0, tokens + (p_input_tokens + p_output_tokens) - res.est_tokens)
          where tenant_id = p_tenant_id and window_start = res.window_start;
      end if;
      return query select p_cost, true,
        budget is not null and sluice_record_budget_thresholds(p_tenant_id, v_period, budget, committed, p_request_id, p_thresholds);
    end
    $fn$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists sluice_settle(text, text, text, text, text, text, text, text, text, bigint, bigint, timestamptz, integer, integer, bigint, integer, text, integer[])`.execute(db);
  await sql`drop function if exists sluice_reserve(text, text, bigint, bigint, timestamptz, text, integer[])`.execute(db);
  await sql`drop function if exists sluice_record_budget_thresholds(text, text, bigint, bigint, text, integer[])`.execute(db);
}
