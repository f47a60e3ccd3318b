/**
 * Experiment rollups (migration 0641) count a request's whole serving, not its first ledger row:
 * a legacy completion with several prompts has one billable usage row per prompt (`infer`,
 * `infer:1`, `infer:2`, … — migration 0701), and the rollups counted only `infer`.
 *
 * A request's serving is now the sum of its billable rows whose step is `infer`, `embed` or
 * `infer:<digits>` (`experiment_serving_step`; failed or cancelled attempts' rows —
 * `<step>:failed:<deployment>`, `<step>:cancelled:<deployment>` — are unbillable and never count,
 * nor does any other step): one served request per exposure, its cost and tokens summed over
 * those rows, its latency the sum of theirs (the prompts run in sequence). The rollups keep sums
 * of squares of these per-request values, so a row arriving for a request already served moves the
 * request's contribution: the usage trigger takes out the request's sums as they were before the
 * statement and puts in the sums after it (`experiment_serving_apply`), which needs writers of the
 * same request's rows to serialize: the trigger locks the request rows `for no key update` (it
 * was `for share`, which let two writers of one request read the same "before").
 *
 * Existing rollups are corrected in place: for each exposed request whose serving rows were not
 * counted as one (several rows, or an `infer:<i>` row), its per-row contributions are taken out
 * and its per-request sums put in. Writers of the ledger and exposures wait while this runs.
 * Frozen in time: Kysely<any>, no app imports (down rebuilds 0641's rollups from its own code).
 */
import { sql, type Kysely } from 'kysely';
import { down as dropRollups, up as buildRollups } from './2026-12-01-0641-experiment-rollups.js';

export async function up(db: Kysely<any>): Promise<void> {
  // No ledger row or exposure is written between the old triggers and the corrected sums.
  await sql`lock table usage, experiment_exposures in share row exclusive mode`.execute(db);

  await sql`
    create function experiment_serving_step(step text) returns boolean language sql immutable as $$
      select step in ('infer', 'embed') or step ~ '^infer:[0-9]+$'
    $$`.execute(db);
  // A request's serving: how many of its rows count, and their sums (latency over the rows that have one).
  await sql`create type experiment_serving as (request_id text, n bigint, cost numeric, pt numeric, ct numeric, lat_n bigint, lat numeric)`.execute(db);
  await sql`
    create function experiment_serving_of(ids text[]) returns setof experiment_serving language sql stable as $$
      select u.request_id, count(*), sum(u.cost_micros::numeric), sum(u.input_tokens::numeric), sum(u.output_tokens::numeric),
        count(u.latency_ms), coalesce(sum(u.latency_ms::numeric), 0)
      from usage u where u.request_id = any(ids) and u.billable and experiment_serving_step(u.step)
      group by u.request_id
    $$`.execute(db);
  // Its contribution, times sign (null experiment: to the request's exposures, as 0641's deltas).
  await sql`
    create function experiment_serving_delta(s experiment_serving, sign int, x experiment_exposures default null) returns experiment_rollup_delta
    language sql immutable as $$
      select row(s.request_id, x.experiment_id, x.tenant_id, x.variant, sign, 0, 0, 0, 0, 1,
        s.cost, s.pt, s.ct, case when s.lat_n > 0 then s.lat::int end, null)::experiment_rollup_delta
    $$`.execute(db);
  // `changed`: a statement's serving rows of exposed requests as 0641's per-row deltas (+1 new, -1
  // old). Each request concerned moves from its sums before the statement (after minus changed) to after.
  await sql`
    create function experiment_serving_apply(changed experiment_rollup_delta[]) returns void language sql as $$
      with d as (
        select c.request_id, sum(c.sign) as n, sum(c.sign * c.cost) as cost, sum(c.sign * c.pt) as pt, sum(c.sign * c.ct) as ct,
          coalesce(sum(c.sign) filter (where c.latency is not null), 0) as lat_n, coalesce(sum(c.sign * c.latency), 0) as lat
        from unnest(changed) c
        group by c.request_id
      ),
      s as (
        select d.request_id,
          row(d.request_id, coalesce(a.n, 0) - d.n, coalesce(a.cost, 0) - d.cost, coalesce(a.pt, 0) - d.pt, coalesce(a.ct, 0) - d.ct,
            coalesce(a.lat_n, 0) - d.lat_n, coalesce(a.lat, 0) - d.lat)::experiment_serving as before,
          a::experiment_serving as after
        from d left join experiment_serving_of(array(select request_id from d)) a on a.request_id = d.request_id
      )
      select experiment_rollup_apply(array(
        select experiment_serving_delta(s.before, -1) from s where (s.before).n > 0
        union all
        select experiment_serving_delta(s.after, 1) from s where (s.after).n > 0))
    $$`.execute(db);

  await sql`
    create or replace function experiment_rollup_on_usage() returns trigger language plpgsql as $$
    declare
      changed experiment_rollup_delta[] := '{}';
    begin
      -- Serialize with the request's other writers (an exposure, another row of its serving), then
      -- read: the statements below see what they committed.
      if tg_op in ('UPDATE', 'DELETE') then
        perform 1 from requests r where r.id in (select o.request_id from old_rows o where o.billable and experiment_serving_step(o.step)) order by r.id for no key update;
        changed := changed || array(select experiment_usage_delta(o, -1) from old_rows o where o.billable and experiment_serving_step(o.step)
          and exists (select 1 from experiment_exposures e where e.request_id = o.request_id));
      end if;
      if tg_op in ('UPDATE', 'INSERT') then
        perform 1 from requests r where r.id in (select n.request_id from new_rows n where n.billable and experiment_serving_step(n.step)) order by r.id for no key update;
        changed := changed || array(select experiment_usage_delta(n, 1) from new_rows n where n.billable and experiment_serving_step(n.step)
          and exists (select 1 from experiment_exposures e where e.request_id = n.request_id));
      end if;
      if cardinality(changed) > 0 then
        perform experiment_serving_apply(changed);
      end if;
      return null;
    end $$`.execute(db);

  // 0641's exposure trigger, the request's serving counted as one (was: each infer/embed row).
  await sql`
    create or replace function experiment_rollup_on_exposures() returns trigger language plpgsql as $$
    begin
      if tg_op = 'UPDATE' then
        if exists (select 1 from old_rows o join new_rows n on n.request_id = o.request_id and n.experiment_id = o.experiment_id
                   where n.variant is distinct from o.variant or n.tenant_id is distinct from o.tenant_id)
           or (select count(*) from new_rows n join old_rows o on n.request_id = o.request_id and n.experiment_id = o.experiment_id) <> (select count(*) from new_rows) then
          raise exception 'an experiment exposure''s experiment, variant, tenant and request do not change';
        end if;
        return null;
      end if;
      if tg_op = 'INSERT' then
        perform 1 from requests r where r.id in (select request_id from new_rows) order by r.id for update;
        perform experiment_rollup_apply(array(
          select row(x.request_id, x.experiment_id, x.tenant_id, x.variant, 1, 1, 0, 0, 0, 0, 0, 0, 0, null, null)::experiment_rollup_delta from new_rows x
          union all
          select experiment_request_delta(r, 1, x) from new_rows x join requests r on r.id = x.request_id where r.status in ('succeeded', 'failed', 'cancelled')
          union all
          select experiment_serving_delta(s, 1, x) from new_rows x join experiment_serving_of(array(select request_id from new_rows)) s on s.request_id = x.request_id));
        perform experiment_feedback_apply(array(
          select experiment_feedback_row_delta(f, 1, x) from new_rows x join feedback f on f.request_id = x.request_id and f.tenant_id = x.tenant_id));
      else
        perform 1 from requests r where r.id in (select request_id from old_rows) order by r.id for update;
        perform experiment_rollup_apply(array(
          select row(x.request_id, x.experiment_id, x.tenant_id, x.variant, -1, 1, 0, 0, 0, 0, 0, 0, 0, null, null)::experiment_rollup_delta from old_rows x
          union all
          select experiment_request_delta(r, -1, x) from old_rows x join requests r on r.id = x.request_id where r.status in ('succeeded', 'failed', 'cancelled')
          union all
          select experiment_serving_delta(s, -1, x) from old_rows x join experiment_serving_of(array(select request_id from old_rows)) s on s.request_id = x.request_id));
        perform experiment_feedback_apply(array(
          select experiment_feedback_row_delta(f, -1, x) from old_rows x join feedback f on f.request_id = x.request_id and f.tenant_id = x.tenant_id));
      end if;
      return null;
    end $$`.execute(db);

  // The exposed requests 0641 counted row by row where one request is now one serving: their rows'
  // contributions out, their sums in.
  await sql`
    create temporary table experiment_serving_fix on commit drop as
      select u.request_id from usage u
      where u.billable and experiment_serving_step(u.step) and exists (select 1 from experiment_exposures e where e.request_id = u.request_id)
      group by u.request_id
      having count(*) > 1 or bool_or(u.step not in ('infer', 'embed'))`.execute(db);
  await sql`select 1 from requests r where r.id in (select request_id from experiment_serving_fix) order by r.id for no key update`.execute(db);
  await sql`
    select experiment_rollup_apply(array(
      select experiment_usage_delta(u, -1) from usage u join experiment_serving_fix f on f.request_id = u.request_id
      where u.billable and u.step in ('infer', 'embed')
      union all
      select experiment_serving_delta(s, 1) from experiment_serving_of(array(select request_id from experiment_serving_fix)) s))`.execute(db);
}

/** Back to 0641's row-by-row rollups, rebuilt from the base tables by 0641 itself. */
export async function down(db: Kysely<any>): Promise<void> {
  // These first: they use 0641's types (the trigger functions that call them go with 0641's down).
  for (const f of [
    'experiment_serving_apply(experiment_rollup_delta[])', 'experiment_serving_delta(experiment_serving, int, experiment_exposures)',
    'experiment_serving_of(text[])', 'experiment_serving_step(text)',
  ]) await sql.raw(`drop function if exists ${f}`).execute(db);
  await sql`drop type if exists experiment_serving`.execute(db);
  await dropRollups(db);
  await buildRollups(db);
}
