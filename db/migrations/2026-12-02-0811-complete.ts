/**
 * A request's completion in one round trip (issue 18 target 1): `sluice_complete` runs, in the
 * caller's one statement (one transaction), what `complete` ran as five statements: the
 * deployment's circuit read (is it closed and clean, so a success changes nothing?), the price in
 * force (`sluice_price_for`) or, for a response-cache hit, the model's cache price, the cost
 * (`sluice_usage_cost`), the settle (`sluice_settle`, migration 0008: exactly once per request and
 * step), the request's outcome (`sluice_finish_requests`) and the outcome's audit row
 * (`sluice_audit_append`, migration 0711), whose data carries the settled cost. The client sends
 * the row's canonical content in three parts around the cost and the seq (parts[1] || cost ||
 * parts[2] || seq || parts[3]); cost and seq are written as PostgreSQL writes a bigint, which is
 * how JavaScript writes a safe integer. The audit head is locked last, so the chain's lock is held
 * for the least time and no lock is taken after it (no lock cycle with the settle's rows).
 * A circuit that is not clean and closed is left to the caller's breaker step (the transitions
 * are the breaker's, in `domain/circuit-breaker.ts`): `circuit_clean` false says so.
 * `sluice_price_for` and `sluice_finish_requests` are also what `priceFor` and `finishRequests`
 * call, so each rule is written once.
 * Frozen in time: Kysely<any>, no app imports; a later change is a new migration.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // The price in force at p_at for a tenant on a deployment: the latest list row with
  // effective_from <= p_at, its token and request prices replaced by the tenant's latest override
  // with effective_from <= p_at. No row when the deployment has no price yet.
  await sql`
    create or replace function sluice_price_for(p_tenant_id text, p_deployment_id text, p_at timestamptz)
    returns table (price_id bigint, tenant_price_id bigint, input_micros_per_mtok bigint, output_micros_per_mtok bigint,
                   request_micros bigint, batch_discount_bps integer)
    language sql stable as $fn$
      select p.id, t.id, case when t.id is null then p.input_micros_per_mtok else t.input_micros_per_mtok end,
             case when t.id is null then p.output_micros_per_mtok else t.output_micros_per_mtok end,
             case when t.id is null then p.request_micros else t.request_micros end, p.batch_discount_bps
      from prices p
      left join lateral (
        select tp.id, tp.input_micros_per_mtok, tp.output_micros_per_mtok, tp.request_micros from tenant_prices tp
        where tp.tenant_id = p_tenant_id and tp.deployment_id = p_deployment_id and tp.effective_from <= p_at
        order by tp.effective_from desc limit 1
      ) t on true
      where p.deployment_id = p_deployment_id and p.effective_from <= p_at
      order by p.effective_from desc limit 1
    $fn$`.execute(db);

  // usageCostMicros (activities/billing.ts): tokens at the rates, rounded up to a whole micro-USD,
  // plus the request fee; batch usage then less the batch discount, rounded down.
  await sql`
    create or replace function sluice_usage_cost(
      p_input_rate bigint, p_output_rate bigint, p_request_micros bigint, p_batch_bps integer, p_kind text,
      p_input_tokens integer, p_output_tokens integer
    ) returns bigint language sql immutable as $fn$
      select case when p_kind = 'batch' and p_batch_bps <> 0 then g - div(g * p_batch_bps, 10000) else g end::bigint
      from (select div(p_input_tokens::numeric * p_input_rate + p_output_tokens::numeric * p_output_rate + 999999, 1000000)
                   + p_request_micros as g) c
    $fn$`.execute(db);

  // finishRequests (db/repositories/requests.ts): each outcome recorded once, with latency_ms
  // and a stream's ttft_ms; returns the requests this call finished and their seconds from creation.
  // Text cast to json, never through a JSON function: a completion may hold U+0000.
  await sql`
    create or replace function sluice_finish_requests(
      p_ids text[], p_statuses text[], p_results text[], p_errors text[], p_failure_types text[], p_pools text[],
      p_finished_at timestamptz
    ) returns table (id text, seconds float8) language sql as $fn$
      update requests as r
      set status = v.status, result = v.result::json, error = v.error::json, finished_at = p_finished_at,
          failure_type = v.failure_type, pool = v.pool,
          latency_ms = greatest(0, round(extract(epoch from (p_finished_at - r.created_at)) * 1000))::integer,
          ttft_ms = (select greatest(0, round(extract(epoch from (c.created_at - r.created_at)) * 1000))::integer
                     from stream_chunks c where c.request_id = r.id order by c.id limit 1)
      from unnest(p_ids, p_statuses, p_results, p_errors, p_failure_types, p_pools) as v(id, status, result, error, failure_type, pool)
      where r.id = v.id and r.status in ('queued', 'running')
      returning r.id, extract(epoch from (r.finished_at - r.created_at))::float8
    $fn$`.execute(db);

  await sql`
    create or replace function sluice_complete(
      p_request_id text, p_step text, p_tenant_id text, p_key_id text, p_kind text, p_model text,
      p_deployment_id text, p_pool text, p_variant text, p_at timestamptz,
      p_input_tokens integer, p_output_tokens integer, p_latency_ms integer, p_cached boolean,
      p_fallback_period text, p_thresholds integer[],
      p_actor text, p_audit_tenant_id text, p_action text, p_target text, p_data jsonb, p_idempotency_key text, p_content text[],
      p_status text, p_result text, p_error text, p_failure_type text, p_outcome_pool text, p_finished_at timestamptz
    ) returns table (cost_micros bigint, inserted boolean, budget_events boolean, circuit_clean boolean, finished_seconds float8)
    language plpgsql as $fn$
    #variable_conflict use_column
    declare
      q record;
      s record;
      v_cost bigint := 0;
      v_clean boolean;
      v_seconds float8;
      v_price_id bigint;
      v_tenant_price_id bigint;
    begin
      if p_input_tokens < 0 or p_output_tokens < 0 or p_latency_ms < 0 then
        raise exception 'sluice_complete: negative token count or latency';
      end if;
      select c.state = 'closed' and c.failures = 0 into v_clean from circuit_state c where c.deployment_id = p_deployment_id;
      if p_cached then
        select div((p_input_tokens::numeric + p_output_tokens) * m.cache_micros_per_mtok + 999999, 1000000)::bigint
          into v_cost from models m where m.id = p_model;
        v_cost := coalesce(v_cost, 0);
      else
        select * into q from sluice_price_for(p_tenant_id, p_deployment_id, p_at);
        if found then
          v_price_id := q.price_id;
          v_tenant_price_id := q.tenant_price_id;
          v_cost := sluice_usage_cost(q.input_micros_per_mtok, q.output_micros_per_mtok, q.request_micros, q.batch_discount_bps,
            p_kind, p_input_tokens, p_output_tokens);
        end if;
      end if;
      select * into strict s from sluice_settle(p_request_id, p_step, p_tenant_id, p_key_id, p_kind, p_model, p_deployment_id, p_pool,
        p_variant, v_price_id, v_tenant_price_id, p_at, p_input_tokens, p_output_tokens, v_cost, p_latency_ms,
        p_fallback_period, p_thresholds);
      if p_cached then
        update usage u set cached = true where u.request_id = p_request_id and u.step = p_step;
      end if;
      select f.seconds into v_seconds from sluice_finish_requests(array[p_request_id], array[p_status], array[p_result], array[p_error],
        array[p_failure_type], array[p_outcome_pool], p_finished_at) f;
      perform sluice_audit_append(p_at, p_actor, p_audit_tenant_id, p_action, p_target,
        p_data || jsonb_build_object('cost_micros', s.cost_micros), p_idempotency_key,
        p_content[1] || s.cost_micros::text || p_content[2], p_content[3]);
      return query select s.cost_micros, s.inserted, s.budget_events, coalesce(v_clean, false), v_seconds;
    end
    $fn$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists sluice_complete(text, text, text, text, text, text, text, text, text, timestamptz, integer, integer, integer, boolean, text, integer[], text, text, text, text, jsonb, text, text[], text, text, text, text, text, timestamptz)`.execute(db);
  await sql`drop function if exists sluice_finish_requests(text[], text[], text[], text[], text[], text[], timestamptz)`.execute(db);
  await sql`drop function if exists sluice_usage_cost(bigint, bigint, bigint, integer, text, integer, integer)`.execute(db);
  await sql`drop function if exists sluice_price_for(text, text, timestamptz)`.execute(db);
}
