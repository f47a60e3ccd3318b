/**
 * The requests table's rollup trigger (0641) calls `experiment_rollup_apply` only when its
 * statement changed a request that is in an experiment. It called it on every insert, update and
 * delete of `requests`, with an empty array for a request in no experiment (nearly all of them):
 * a SQL-language function is planned again on each call, and that planning of its two upserts was
 * about 1.7 ms of PostgreSQL's CPU per statement (`bench/request-steps.ts`), twice per sync request
 * (the API's insert, `sluice_complete`'s update). The usage trigger has had the same guard since
 * 0801. Same deltas, same writes: an empty array upserted nothing.
 * Frozen in time: Kysely<any>, no app imports; a later change is a new migration.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create or replace function experiment_rollup_on_requests() returns trigger language plpgsql as $$
    declare
      changed experiment_rollup_delta[];
    begin
      if tg_op = 'UPDATE' then
        changed := array(
          select experiment_request_delta(o, -1) from old_rows o join new_rows n on n.id = o.id
          where (o.status is distinct from n.status or o.ttft_ms is distinct from n.ttft_ms) and o.status in ('succeeded', 'failed', 'cancelled')
            and exists (select 1 from experiment_exposures e where e.request_id = o.id)
          union all
          select experiment_request_delta(n, 1) from old_rows o join new_rows n on n.id = o.id
          where (o.status is distinct from n.status or o.ttft_ms is distinct from n.ttft_ms) and n.status in ('succeeded', 'failed', 'cancelled')
            and exists (select 1 from experiment_exposures e where e.request_id = n.id));
      elsif tg_op = 'DELETE' then
        changed := array(
          select experiment_request_delta(o, -1) from old_rows o
          where o.status in ('succeeded', 'failed', 'cancelled') and exists (select 1 from experiment_exposures e where e.request_id = o.id));
      else
        changed := array(
          select experiment_request_delta(n, 1) from new_rows n
          where n.status in ('succeeded', 'failed', 'cancelled') and exists (select 1 from experiment_exposures e where e.request_id = n.id));
      end if;
      if cardinality(changed) > 0 then
        perform experiment_rollup_apply(changed);
      end if;
      return null;
    end $$`.execute(db);
}

/** 0641's function, which applies every statement's (possibly empty) deltas. */
export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    create or replace function experiment_rollup_on_requests() returns trigger language plpgsql as $$
    begin
      if tg_op = 'UPDATE' then
        perform experiment_rollup_apply(array(
          select experiment_request_delta(o, -1) from old_rows o join new_rows n on n.id = o.id
          where (o.status is distinct from n.status or o.ttft_ms is distinct from n.ttft_ms) and o.status in ('succeeded', 'failed', 'cancelled')
            and exists (select 1 from experiment_exposures e where e.request_id = o.id)
          union all
          select experiment_request_delta(n, 1) from old_rows o join new_rows n on n.id = o.id
          where (o.status is distinct from n.status or o.ttft_ms is distinct from n.ttft_ms) and n.status in ('succeeded', 'failed', 'cancelled')
            and exists (select 1 from experiment_exposures e where e.request_id = n.id)));
      elsif tg_op = 'DELETE' then
        perform experiment_rollup_apply(array(
          select experiment_request_delta(o, -1) from old_rows o
          where o.status in ('succeeded', 'failed', 'cancelled') and exists (select 1 from experiment_exposures e where e.request_id = o.id)));
      else
        perform experiment_rollup_apply(array(
          select experiment_request_delta(n, 1) from new_rows n
          where n.status in ('succeeded', 'failed', 'cancelled') and exists (select 1 from experiment_exposures e where e.request_id = n.id)));
      end if;
      return null;
    end $$`.execute(db);
}
