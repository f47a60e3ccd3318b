/**
 * Reserve and settle for a chunk of requests in one round trip each: `sluice_reserve_many` and
 * `sluice_settle_many` call `sluice_reserve` / `sluice_settle` (migration 0008) once per item, in
 * order, and return each item's own result (its ordinal first): a request over its budget is
 * refused alone, the others of the chunk go on. One call is one transaction, so a retry after a
 * failure finds either every item done (each function is idempotent per request) or none.
 * A batch's chunk of 64 lines took 128 round trips for these two steps; now 2 (BENCHMARKS.md).
 * Items come as a jsonb array (one parameter instead of a dozen parallel arrays).
 * Frozen in time: Kysely<any>, no app imports; a later change is a new migration.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  // p_items: [{ request_id, tenant_id, est_tokens, est_cost, window, period }]
  await sql`
    create or replace function sluice_reserve_many(p_items jsonb, p_thresholds integer[])
    returns table (ord integer, outcome text, est_cost_micros bigint, budget_events boolean) language plpgsql as $fn$
    declare
      item jsonb;
      i integer;
      r record;
    begin
      for item, i in select e.value, e.ordinality::integer from jsonb_array_elements(p_items) with ordinality e loop
        select * into r from sluice_reserve(item->>'request_id', item->>'tenant_id', (item->>'est_tokens')::bigint,
          (item->>'est_cost')::bigint, (item->>'window')::timestamptz, item->>'period', p_thresholds);
        ord := i; outcome := r.outcome; est_cost_micros := r.est_cost_micros; budget_events := r.budget_events;
        return next;
      end loop;
    end
    $fn$`.execute(db);

  // p_items: [{ request_id, step, tenant_id, key_id, kind, model, deployment_id, pool, variant,
  //   price_id, tenant_price_id, at, input_tokens, output_tokens, cost, latency_ms }]
  await sql`
    create or replace function sluice_settle_many(p_items jsonb, p_fallback_period text, p_thresholds integer[])
    returns table (ord integer, cost_micros bigint, inserted boolean, budget_events boolean) language plpgsql as $fn$
    declare
      item jsonb;
      i integer;
      r record;
    begin
      for item, i in select e.value, e.ordinality::integer from jsonb_array_elements(p_items) with ordinality e loop
        select * into r from sluice_settle(item->>'request_id', item->>'step', item->>'tenant_id', item->>'key_id', item->>'kind',
          item->>'model', item->>'deployment_id', item->>'pool', item->>'variant', (item->>'price_id')::bigint,
          (item->>'tenant_price_id')::bigint, (item->>'at')::timestamptz, (item->>'input_tokens')::integer,
          (item->>'output_tokens')::integer, (item->>'cost')::bigint, (item->>'latency_ms')::integer,
          p_fallback_period, p_thresholds);
        ord := i; cost_micros := r.cost_micros; inserted := r.inserted; budget_events := r.budget_events;
        return next;
      end loop;
    end
    $fn$`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function if exists sluice_settle_many(jsonb, text, integer[])`.execute(db);
  await sql`drop function if exists sluice_reserve_many(jsonb, integer[])`.execute(db);
}
