/**
 * `sluice_settle_part`: settles one step of a request whose one reservation covers several
 * generations (a legacy completion's prompts), leaving the rest of the reservation held. Like
 * `sluice_settle` (migration 0008) it writes the usage row for (request, step) exactly once (a
 * second call inserts nothing and returns the stored cost) and adds the cost to the tenant's
 * spend; unlike it, the reservation stays `held` with its estimate lowered by what the step spent
 * (cost moved from reserved to spent, tokens from the estimate to the counted), so the tenant's
 * committed spend (spent + reserved) never drops below what the request may still spend. The
 * request's last step is settled by `sluice_settle` (which closes the reservation, giving back
 * what is left) or, on a failure or cancel, the release gives back what is left.
 * Frozen in time: Kysely<any>, no app imports; a later change is a new migration.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create or replace function sluice_settle_part(
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
      moved_cost bigint := 0;
      spent_tokens bigint := p_input_tokens + p_output_tokens;
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
        moved_cost := least(p_cost, res.est_cost_micros);
        update reservations set est_cost_micros = est_cost_micros - moved_cost, est_tokens = greatest(0, est_tokens - spent_tokens)
          where request_id = p_request_id;
        -- The step's tokens are counted in the estimate already; only what exceeds it is added.
        if spent_tokens > res.est_tokens then
          update quota_counters set tokens = tokens + (spent_tokens - res.est_tokens)
            where tenant_id = p_tenant_id and window_start = res.window_start;
        end if;
      end if;
      insert into tenant_spend (tenant_id, period, spent_micros, reserved_micros)
        values (p_tenant_id, v_period, p_cost, -moved_cost)
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

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists sluice_settle_part(text, text, text, text, text, text, text, text, text, bigint, bigint, timestamptz, integer, integer, bigint, integer, text, integer[])`.execute(db);
}
