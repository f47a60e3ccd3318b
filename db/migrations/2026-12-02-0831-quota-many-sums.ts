/**
 * `sluice_reserve_many` and `sluice_settle_many` (migration 0611) without a write per item in the
 * shared rows: the 0611 forms called `sluice_reserve` / `sluice_settle` once per item, so a chunk
 * of 256 lines wrote its tenant's `quota_counters` and `tenant_spend` rows 256 times each on the
 * way in and again on the way out (each an update of a row every line of the tenant touches, each
 * a new row version). Now each counter row is written once per call with the chunk's sum, the
 * reservations are inserted and closed with one statement, and the usage rows inserted with one
 * (so the usage rollup's statement trigger, migration 0641, runs once per chunk).
 *
 * What stays as it was per item: the answer of each item, in order (ordinal first); an item over a
 * limit is refused alone, with the items before it counted (each item is decided against the
 * counters as the items before it left them, under the tenant's row lock, as `sluice_reserve`
 * decides one); a request already held answers with its hold; a usage row already written answers
 * with its stored cost and changes nothing; budget thresholds recorded with the committed spend
 * just after the item that reached them, and named after it. One call is one transaction.
 * Counters a concurrent settle lowers while the lock is held (settles take no tenant lock) are read
 * once at the lock: a chunk is decided as if all of it came at that instant, never above a limit.
 * Frozen in time: Kysely<any>, no app imports; a later change is a new migration.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // p_items: [{ request_id, tenant_id, est_tokens, est_cost, window, period }]
  await sql`
    create or replace function sluice_reserve_many(p_items jsonb, p_thresholds integer[])
    returns table (ord integer, outcome text, est_cost_micros bigint, budget_events boolean) language plpgsql as $fn$
    #variable_conflict use_column
    declare
      g record;
      it record;
      t record;
      n integer := jsonb_array_length(p_items);
      r_outcome text[] := array_fill(null::text, array[n]);
      r_cost bigint[] := array_fill(null::bigint, array[n]);
      r_events boolean[] := array_fill(false, array[n]);
      held jsonb;
      c_requests bigint;
      c_tokens bigint;
      n_held bigint;
      committed bigint;
      add_ids text[];
      add_tokens bigint[];
      add_costs bigint[];
      sum_tokens bigint;
      sum_cost bigint;
    begin
      for g in
        select distinct e.v->>'tenant_id' as tenant_id, (e.v->>'window')::timestamptz as w_start, e.v->>'period' as period
        from jsonb_array_elements(p_items) e(v) order by 1, 2, 3
      loop
        select requests_per_minute, tokens_per_minute, max_concurrent, monthly_budget_micros into t
          from tenants where id = g.tenant_id for update;
        if not found then
          for it in select e.o::integer as o from jsonb_array_elements(p_items) with ordinality e(v, o)
            where e.v->>'tenant_id' = g.tenant_id and (e.v->>'window')::timestamptz = g.w_start and e.v->>'period' = g.period
          loop
            r_outcome[it.o] := 'tenant_missing';
          end loop;
          continue;
        end if;
        select coalesce(jsonb_object_agg(r.request_id, r.est_cost_micros), '{}'::jsonb) into held
          from reservations r where r.request_id in (
            select e.v->>'request_id' from jsonb_array_elements(p_items) e(v) where e.v->>'tenant_id' = g.tenant_id);
        select q.requests, q.tokens into c_requests, c_tokens
          from quota_counters q where q.tenant_id = g.tenant_id and q.window_start = g.w_start;
        c_requests := coalesce(c_requests, 0);
        c_tokens := coalesce(c_tokens, 0);
        if t.max_concurrent is not null then
          select count(*) into n_held from reservations r where r.tenant_id = g.tenant_id and r.status = 'held';
        end if;
        committed := null;
        if t.monthly_budget_micros is not null then
          select s.spent_micros + s.reserved_micros into committed
            from tenant_spend s where s.tenant_id = g.tenant_id and s.period = g.period;
        end if;
        committed := coalesce(committed, 0);
        add_ids := '{}'; add_tokens := '{}'; add_costs := '{}'; sum_tokens := 0; sum_cost := 0;
        for it in
          select e.o::integer as o, e.v->>'request_id' as request_id, (e.v->>'est_tokens')::bigint as est_tokens,
                 (e.v->>'est_cost')::bigint as est_cost
          from jsonb_array_elements(p_items) with ordinality e(v, o)
          where e.v->>'tenant_id' = g.tenant_id and (e.v->>'window')::timestamptz = g.w_start and e.v->>'period' = g.period
          order by e.o
        loop
          if held ? it.request_id then
            r_outcome[it.o] := 'ok'; r_cost[it.o] := (held->>it.request_id)::bigint; r_events[it.o] := true;
            continue;
          end if;
          if t.requests_per_minute is not null and c_requests + 1 > t.requests_per_minute then
            r_outcome[it.o] := 'requests_per_minute'; continue;
          end if;
          if t.tokens_per_minute is not null and c_tokens + it.est_tokens > t.tokens_per_minute then
            r_outcome[it.o] := 'tokens_per_minute'; continue;
          end if;
          if t.max_concurrent is not null and n_held >= t.max_concurrent then
            r_outcome[it.o] := 'max_concurrent'; continue;
          end if;
          if t.monthly_budget_micros is not null and committed + it.est_cost > t.monthly_budget_micros then
            r_outcome[it.o] := 'monthly_budget'; continue;
          end if;
          c_requests := c_requests + 1;
          c_tokens := c_tokens + it.est_tokens;
          n_held := n_held + 1;
          committed := committed + it.est_cost;
          held := held || jsonb_build_object(it.request_id, it.est_cost);
          add_ids := add_ids || it.request_id; add_tokens := add_tokens || it.est_tokens; add_costs := add_costs || it.est_cost;
          sum_tokens := sum_tokens + it.est_tokens; sum_cost := sum_cost + it.est_cost;
          r_outcome[it.o] := 'ok'; r_cost[it.o] := it.est_cost;
          r_events[it.o] := t.monthly_budget_micros is not null
            and sluice_record_budget_thresholds(g.tenant_id, g.period, t.monthly_budget_micros, committed, it.request_id, p_thresholds);
        end loop;
        if cardinality(add_ids) = 0 then continue; end if;
        insert into reservations (request_id, tenant_id, window_start, period, est_tokens, est_cost_micros, status)
          select a.id, g.tenant_id, g.w_start, g.period, a.tokens, a.cost, 'held'
          from unnest(add_ids, add_tokens, add_costs) a(id, tokens, cost);
        insert into quota_counters (tenant_id, window_start, requests, tokens)
          values (g.tenant_id, g.w_start, cardinality(add_ids), sum_tokens)
          on conflict (tenant_id, window_start)
          do update set requests = quota_counters.requests + excluded.requests, tokens = quota_counters.tokens + excluded.tokens;
        insert into tenant_spend (tenant_id, period, spent_micros, reserved_micros) values (g.tenant_id, g.period, 0, sum_cost)
          on conflict (tenant_id, period) do update set reserved_micros = tenant_spend.reserved_micros + excluded.reserved_micros;
      end loop;
      return query select i, r_outcome[i], r_cost[i], r_events[i] from generate_series(1, n) i;
    end
    $fn$`.execute(db);

  // p_items: [{ request_id, step, tenant_id, key_id, kind, model, deployment_id, pool, variant,
  //   price_id, tenant_price_id, at, input_tokens, output_tokens, cost, latency_ms }]
  await sql`
    create or replace function sluice_settle_many(p_items jsonb, p_fallback_period text, p_thresholds integer[])
    returns table (ord integer, cost_micros bigint, inserted boolean, budget_events boolean) language plpgsql as $fn$
    #variable_conflict use_column
    declare
      n integer := jsonb_array_length(p_items);
      ins integer[];
      c record;
      k integer;
      i integer;
      a_o integer[]; a_rid text[]; a_tenant text[]; a_period text[]; a_cost bigint[]; a_budget bigint[]; a_committed bigint[];
      r_cost bigint[] := array_fill(null::bigint, array[n]);
      r_ins boolean[] := array_fill(null::boolean, array[n]);
      r_events boolean[] := array_fill(null::boolean, array[n]);
    begin
      -- The requests' reservations, locked in one order (as sluice_settle locks each one).
      perform 1 from reservations r where r.request_id in (select e.v->>'request_id' from jsonb_array_elements(p_items) e(v))
        order by r.request_id for update;
      -- Usage rows, exactly once per (request, step): of items with the same key, the first one's.
      with items as (
        select e.o::integer as o, e.v from jsonb_array_elements(p_items) with ordinality e(v, o)
      ), added as (
        insert into usage (request_id, step, tenant_id, key_id, kind, model, deployment_id, pool, variant, price_id,
                           tenant_price_id, created_at, input_tokens, output_tokens, cost_micros, latency_ms, billable)
          select v->>'request_id', v->>'step', v->>'tenant_id', v->>'key_id', v->>'kind', v->>'model', v->>'deployment_id',
                 v->>'pool', v->>'variant', (v->>'price_id')::bigint, (v->>'tenant_price_id')::bigint,
                 coalesce((v->>'at')::timestamptz, now()), (v->>'input_tokens')::integer, (v->>'output_tokens')::integer,
                 (v->>'cost')::bigint, (v->>'latency_ms')::integer, true
          from items order by o
          on conflict (request_id, step) do nothing
          returning request_id, step
      )
      select coalesce(array_agg(f.o order by f.o), '{}') into ins from added a
        join (select distinct on (v->>'request_id', v->>'step') o, v->>'request_id' as request_id, v->>'step' as step
              from items order by v->>'request_id', v->>'step', o) f
          on f.request_id = a.request_id and f.step = a.step;

      -- Then the counter rows, then the spend rows, each in one order: the order sluice_reserve_many
      -- writes them in (the statement below writes them in an order of its plan's choosing); taken
      -- after the usage rows' insert, so other chunks of the tenant wait for them as little as may be.
      perform 1 from quota_counters q where (q.tenant_id, q.window_start) in (
          select r.tenant_id, r.window_start from reservations r
          where r.request_id in (select e.v->>'request_id' from jsonb_array_elements(p_items) e(v)))
        order by q.tenant_id, q.window_start for update;
      perform 1 from tenant_spend sp where (sp.tenant_id, sp.period) in (
          select e.v->>'tenant_id', coalesce(r.period, p_fallback_period) from jsonb_array_elements(p_items) e(v)
          left join reservations r on r.request_id = e.v->>'request_id')
        order by sp.tenant_id, sp.period for update;
      -- Per inserted item: whether it closes its request's held reservation (the request's first
      -- item here does), then each counter row written once with the sums, and the committed spend
      -- of the item's tenant and period just after it (the final one less what later items moved).
      with x as (
        select e.o::integer as o, e.v->>'request_id' as request_id, e.v->>'tenant_id' as tenant_id, (e.v->>'cost')::bigint as cost,
               (e.v->>'input_tokens')::bigint + (e.v->>'output_tokens')::bigint as spent_tokens
        from jsonb_array_elements(p_items) with ordinality e(v, o) where e.o = any(ins)
      ), s as (
        select x.*, coalesce(r.period, p_fallback_period) as period,
               coalesce(r.status = 'held' and x.o = min(x.o) over (partition by x.request_id), false) as closes,
               r.est_cost_micros as est_cost, r.est_tokens, r.window_start
        from x left join reservations r on r.request_id = x.request_id
      ), closed as (
        update reservations r set status = 'settled', closed_at = now() from s where s.closes and r.request_id = s.request_id
      ), counted as (
        update quota_counters q set tokens = greatest(0, q.tokens + d.delta)
        from (select tenant_id, window_start, sum(spent_tokens - est_tokens) as delta from s where closes group by tenant_id, window_start) d
        where q.tenant_id = d.tenant_id and q.window_start = d.window_start
      ), spent as (
        insert into tenant_spend (tenant_id, period, spent_micros, reserved_micros)
          select tenant_id, period, sum(cost), sum(case when closes then -est_cost else 0 end) from s
          group by tenant_id, period order by tenant_id, period
          on conflict (tenant_id, period) do update set
            spent_micros = tenant_spend.spent_micros + excluded.spent_micros,
            reserved_micros = tenant_spend.reserved_micros + excluded.reserved_micros
          returning tenant_spend.tenant_id, tenant_spend.period, tenant_spend.spent_micros + tenant_spend.reserved_micros as committed
      ), after as (
        select s.o, s.request_id, s.tenant_id, s.period, s.cost,
               sp.committed - coalesce(sum(s.cost - case when s.closes then s.est_cost else 0 end)
                 over (partition by s.tenant_id, s.period order by s.o rows between 1 following and unbounded following), 0) as committed
        from s join spent sp on sp.tenant_id = s.tenant_id and sp.period = s.period
      )
      select array_agg(a.o order by a.o), array_agg(a.request_id order by a.o), array_agg(a.tenant_id order by a.o),
             array_agg(a.period order by a.o), array_agg(a.cost order by a.o), array_agg(t.monthly_budget_micros order by a.o),
             array_agg(a.committed order by a.o)
        into a_o, a_rid, a_tenant, a_period, a_cost, a_budget, a_committed
        from after a left join tenants t on t.id = a.tenant_id;

      -- Thresholds in the items' order, as one sluice_settle after the other would record them.
      for k in 1 .. coalesce(cardinality(a_o), 0) loop
        i := a_o[k];
        r_cost[i] := a_cost[k]; r_ins[i] := true;
        r_events[i] := a_budget[k] is not null
          and sluice_record_budget_thresholds(a_tenant[k], a_period[k], a_budget[k], a_committed[k], a_rid[k], p_thresholds);
      end loop;
      -- Items whose usage row was there already: its stored cost, nothing changed.
      for c in
        select e.o::integer as o, u.cost_micros from jsonb_array_elements(p_items) with ordinality e(v, o)
        join usage u on u.request_id = e.v->>'request_id' and u.step = e.v->>'step'
        where not (e.o = any(ins))
      loop
        r_cost[c.o] := c.cost_micros; r_ins[c.o] := false; r_events[c.o] := true;
      end loop;
      return query select g, r_cost[g], r_ins[g], r_events[g] from generate_series(1, n) g;
    end
    $fn$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  const { up: previous } = await import('./2026-12-01-0611-quota-many.js');
  await previous(db);
}
