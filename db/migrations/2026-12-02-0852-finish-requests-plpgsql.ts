/**
 * `sluice_finish_requests` (0811) in PL/pgSQL, the same statement in it: a SQL-language function
 * that is not inlined (it updates) is planned again on every call, and a PL/pgSQL function keeps
 * its statement's plan for the session. It runs once per request (`sluice_complete`) and once per
 * chunk of batch lines (`finishRequests`); planning its update was about 1.3 ms of PostgreSQL's
 * CPU per call (`bench/request-steps.ts`). Same arguments, same rows returned, same writes.
 * Frozen in time: Kysely<any>, no app imports; a later change is a new migration.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create or replace function sluice_finish_requests(
      p_ids text[], p_statuses text[], p_results text[], p_errors text[], p_failure_types text[], p_pools text[],
      p_finished_at timestamptz
    ) returns table (id text, seconds float8) language plpgsql as $fn$
    #variable_conflict use_column
    begin
      return query
      update requests as r
      set status = v.status, result = v.result::json, error = v.error::json, finished_at = p_finished_at,
          failure_type = v.failure_type, pool = v.pool,
          latency_ms = greatest(0, round(extract(epoch from (p_finished_at - r.created_at)) * 1000))::integer,
          ttft_ms = (select greatest(0, round(extract(epoch from (c.created_at - r.created_at)) * 1000))::integer
                     from stream_chunks c where c.request_id = r.id order by c.id limit 1)
      from unnest(p_ids, p_statuses, p_results, p_errors, p_failure_types, p_pools) as v(id, status, result, error, failure_type, pool)
      where r.id = v.id and r.status in ('queued', 'running')
      returning r.id, extract(epoch from (r.finished_at - r.created_at))::float8;
    end
    $fn$`.execute(db);
}

/** 0811's SQL-language function. */
export async function down(db: Kysely<any>): Promise<void> {
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
}
