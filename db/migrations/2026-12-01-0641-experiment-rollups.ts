/**
 * Experiment results without joining a million rows (issue 15): per-experiment sums kept by
 * triggers on the tables the results come from, so reading the results reads a few rows.
 *
 * - `experiment_rollups`: per (experiment, tenant, variant, shard) the exposures, the requests'
 *   final statuses, and the serving ledger row's (billable `infer`/`embed` usage) count, cost and
 *   tokens with their sums of squares. `shard` (the request ID's hash mod 8) spreads one hot
 *   experiment's writes over 8 rows; readers sum the shards.
 * - `experiment_histograms`: per (experiment, tenant, variant, metric, bucket) a count: `latency`
 *   from the serving usage row's `latency_ms`, `ttft` from a succeeded request's `ttft_ms`.
 *   Buckets are exact below 1 s, 3 significant digits above (`experiment_bucket`).
 * - `experiment_feedback_rollups`: per (experiment, tenant, variant, metric, kind) the count, the
 *   trues and the scores' sum and sum of squares.
 *
 * Each table's statement-level trigger applies the difference its statement makes (the old rows'
 * contributions out, the new ones' in) to every exposure of the requests concerned, grouped per
 * target row and upserted in key order; an exposure's own insert (or delete) adds (removes) the
 * contributions already there. Whichever of a pair arrives second counts it, once: the triggers
 * lock the request rows first (an exposure `for update`, a ledger or feedback row `for share`, a
 * status update holds its rows already), so an exposure and its request's outcome written
 * concurrently serialize and the later sees the earlier. (A request row inserted concurrently with
 * an exposure of it has no row to lock yet; the API inserts a request before its workflow can
 * assign it.) Sums are `numeric` (exact under the subtractions). An exposure's experiment,
 * variant, tenant and request never change (the erase rewrites only its subject); such an update
 * is refused.
 *
 * Existing rows are summed once here. Frozen in time: uses Kysely<any> and imports nothing of the app.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table experiment_rollups (
      experiment_id text not null, tenant_id text not null, variant text not null, shard smallint not null,
      exposures bigint not null default 0, succeeded bigint not null default 0, failed bigint not null default 0, cancelled bigint not null default 0,
      served bigint not null default 0, cost_sum numeric not null default 0, cost_sq numeric not null default 0,
      pt_sum numeric not null default 0, pt_sq numeric not null default 0, ct_sum numeric not null default 0, ct_sq numeric not null default 0,
      primary key (experiment_id, tenant_id, variant, shard)
    )`.execute(db);
  await sql`
    create table experiment_histograms (
      experiment_id text not null, tenant_id text not null, variant text not null,
      metric text not null check (metric in ('latency', 'ttft')), bucket integer not null, n bigint not null default 0,
      primary key (experiment_id, tenant_id, variant, metric, bucket)
    )`.execute(db);
  await sql`
    create table experiment_feedback_rollups (
      experiment_id text not null, tenant_id text not null, variant text not null, metric text not null, kind text not null,
      n bigint not null default 0, trues bigint not null default 0, s numeric not null default 0, sq numeric not null default 0,
      primary key (experiment_id, tenant_id, variant, metric, kind)
    )`.execute(db);

  await sql`
    create function experiment_bucket(ms integer) returns integer language sql immutable as $$
      select case when ms < 1000 then ms else round(ms::numeric, 3 - length(ms::text))::int end
    $$`.execute(db);

  // One request's contribution, times sign. With experiment_id null it goes to every exposure of
  // the request (found at apply time); else to that exposure (an exposure's own insert or delete).
  await sql`
    create type experiment_rollup_delta as (
      request_id text, experiment_id text, tenant_id text, variant text, sign int,
      exposures int, succeeded int, failed int, cancelled int, served int,
      cost numeric, pt numeric, ct numeric, latency int, ttft int
    )`.execute(db);
  await sql`
    create type experiment_feedback_delta as (
      request_id text, tenant_id text, experiment_id text, variant text, sign int,
      metric text, kind text, truth int, score numeric
    )`.execute(db);

  // Applies deltas grouped per target row, in key order (concurrent writers lock rows in one order).
  await sql`
    create function experiment_rollup_apply(deltas experiment_rollup_delta[]) returns void language sql as $$
      with d as (select * from unnest(deltas)),
      j as (
        select coalesce(d.experiment_id, e.experiment_id) as experiment_id, coalesce(d.tenant_id, e.tenant_id) as tenant_id,
          coalesce(d.variant, e.variant) as variant, (abs(hashtext(d.request_id)) % 8)::smallint as shard,
          d.sign, d.exposures, d.succeeded, d.failed, d.cancelled, d.served, d.cost, d.pt, d.ct, d.latency, d.ttft
        from d left join experiment_exposures e on d.experiment_id is null and e.request_id = d.request_id
        where d.experiment_id is not null or e.request_id is not null
      ),
      totals as (
        insert into experiment_rollups as t (experiment_id, tenant_id, variant, shard, exposures, succeeded, failed, cancelled,
          served, cost_sum, cost_sq, pt_sum, pt_sq, ct_sum, ct_sq)
        select experiment_id, tenant_id, variant, shard, sum(sign * exposures), sum(sign * succeeded), sum(sign * failed), sum(sign * cancelled),
          sum(sign * served), sum(sign * cost), sum(sign * cost * cost), sum(sign * pt), sum(sign * pt * pt), sum(sign * ct), sum(sign * ct * ct)
        from j group by 1, 2, 3, 4 order by 1, 2, 3, 4
        on conflict (experiment_id, tenant_id, variant, shard) do update set
          exposures = t.exposures + excluded.exposures, succeeded = t.succeeded + excluded.succeeded,
          failed = t.failed + excluded.failed, cancelled = t.cancelled + excluded.cancelled, served = t.served + excluded.served,
          cost_sum = t.cost_sum + excluded.cost_sum, cost_sq = t.cost_sq + excluded.cost_sq,
          pt_sum = t.pt_sum + excluded.pt_sum, pt_sq = t.pt_sq + excluded.pt_sq, ct_sum = t.ct_sum + excluded.ct_sum, ct_sq = t.ct_sq + excluded.ct_sq
      )
      insert into experiment_histograms as h (experiment_id, tenant_id, variant, metric, bucket, n)
      select experiment_id, tenant_id, variant, metric, bucket, sum(sign) from (
        select experiment_id, tenant_id, variant, 'latency' as metric, experiment_bucket(latency) as bucket, sign from j where latency is not null
        union all
        select experiment_id, tenant_id, variant, 'ttft', experiment_bucket(ttft), sign from j where ttft is not null
      ) b group by 1, 2, 3, 4, 5 order by 1, 2, 3, 4, 5
      on conflict (experiment_id, tenant_id, variant, metric, bucket) do update set n = h.n + excluded.n
    $$`.execute(db);
  await sql`
    create function experiment_feedback_apply(deltas experiment_feedback_delta[]) returns void language sql as $$
      with d as (select * from unnest(deltas)),
      j as (
        select coalesce(d.experiment_id, e.experiment_id) as experiment_id, d.tenant_id, coalesce(d.variant, e.variant) as variant,
          d.sign, d.metric, d.kind, d.truth, d.score
        from d left join experiment_exposures e on d.experiment_id is null and e.request_id = d.request_id and e.tenant_id = d.tenant_id
        where d.experiment_id is not null or e.request_id is not null
      )
      insert into experiment_feedback_rollups as t (experiment_id, tenant_id, variant, metric, kind, n, trues, s, sq)
      select experiment_id, tenant_id, variant, metric, kind, sum(sign), sum(sign * truth), sum(sign * score), sum(sign * score * score)
      from j group by 1, 2, 3, 4, 5 order by 1, 2, 3, 4, 5
      on conflict (experiment_id, tenant_id, variant, metric, kind) do update set
        n = t.n + excluded.n, trues = t.trues + excluded.trues, s = t.s + excluded.s, sq = t.sq + excluded.sq
    $$`.execute(db);

  // Each source row's contribution (null experiment: to the request's exposures).
  await sql`
    create function experiment_request_delta(r requests, sign int, x experiment_exposures default null) returns experiment_rollup_delta
    language sql immutable as $$
      select row(r.id, x.experiment_id, x.tenant_id, x.variant, sign, 0,
        (r.status = 'succeeded')::int, (r.status = 'failed')::int, (r.status = 'cancelled')::int, 0, 0, 0, 0, null,
        case when r.status = 'succeeded' then r.ttft_ms end)::experiment_rollup_delta
    $$`.execute(db);
  await sql`
    create function experiment_usage_delta(u usage, sign int, x experiment_exposures default null) returns experiment_rollup_delta
    language sql immutable as $$
      select row(u.request_id, x.experiment_id, x.tenant_id, x.variant, sign, 0, 0, 0, 0, 1,
        u.cost_micros, u.input_tokens, u.output_tokens, u.latency_ms, null)::experiment_rollup_delta
    $$`.execute(db);
  await sql`
    create function experiment_feedback_row_delta(f feedback, sign int, x experiment_exposures default null) returns experiment_feedback_delta
    language sql immutable as $$
      select row(f.request_id, f.tenant_id, x.experiment_id, x.variant, sign, f.metric, f.kind,
        coalesce(f.value_bool::int, 0), coalesce(f.value_num::numeric, 0))::experiment_feedback_delta
    $$`.execute(db);

  // Statement-level triggers over the transition tables: one grouped upsert per statement, so a
  // chunk of batch lines or a bulk load costs one pass, not one upsert per row. The request rows
  // are locked first (exposures: for update; ledger and feedback: for share; a status update holds
  // its rows already): an exposure and a fact of its request written concurrently serialize, and the
  // later one sees the earlier one.
  await sql`
    create function experiment_rollup_on_requests() returns trigger language plpgsql as $$
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
  await sql`create trigger experiment_rollup_requests_ins after insert on requests referencing new table as new_rows for each statement execute function experiment_rollup_on_requests()`.execute(db);
  await sql`create trigger experiment_rollup_requests_upd after update on requests referencing old table as old_rows new table as new_rows for each statement execute function experiment_rollup_on_requests()`.execute(db);
  await sql`create trigger experiment_rollup_requests_del after delete on requests referencing old table as old_rows for each statement execute function experiment_rollup_on_requests()`.execute(db);

  await sql`
    create function experiment_rollup_on_usage() returns trigger language plpgsql as $$
    begin
      if tg_op in ('UPDATE', 'DELETE') then
        perform 1 from requests r where r.id in (select request_id from old_rows) order by r.id for share;
        perform experiment_rollup_apply(array(
          select experiment_usage_delta(o, -1) from old_rows o
          where o.billable and o.step in ('infer', 'embed') and exists (select 1 from experiment_exposures e where e.request_id = o.request_id)));
      end if;
      if tg_op in ('UPDATE', 'INSERT') then
        perform 1 from requests r where r.id in (select request_id from new_rows) order by r.id for share;
        perform experiment_rollup_apply(array(
          select experiment_usage_delta(n, 1) from new_rows n
          where n.billable and n.step in ('infer', 'embed') and exists (select 1 from experiment_exposures e where e.request_id = n.request_id)));
      end if;
      return null;
    end $$`.execute(db);
  await sql`create trigger experiment_rollup_usage_ins after insert on usage referencing new table as new_rows for each statement execute function experiment_rollup_on_usage()`.execute(db);
  await sql`create trigger experiment_rollup_usage_upd after update on usage referencing old table as old_rows new table as new_rows for each statement execute function experiment_rollup_on_usage()`.execute(db);
  await sql`create trigger experiment_rollup_usage_del after delete on usage referencing old table as old_rows for each statement execute function experiment_rollup_on_usage()`.execute(db);

  await sql`
    create function experiment_rollup_on_feedback() returns trigger language plpgsql as $$
    begin
      if tg_op in ('UPDATE', 'DELETE') then
        perform 1 from requests r where r.id in (select request_id from old_rows) order by r.id for share;
        perform experiment_feedback_apply(array(select experiment_feedback_row_delta(o, -1) from old_rows o
          where exists (select 1 from experiment_exposures e where e.request_id = o.request_id)));
      end if;
      if tg_op in ('UPDATE', 'INSERT') then
        perform 1 from requests r where r.id in (select request_id from new_rows) order by r.id for share;
        perform experiment_feedback_apply(array(select experiment_feedback_row_delta(n, 1) from new_rows n
          where exists (select 1 from experiment_exposures e where e.request_id = n.request_id)));
      end if;
      return null;
    end $$`.execute(db);
  await sql`create trigger experiment_rollup_feedback_ins after insert on feedback referencing new table as new_rows for each statement execute function experiment_rollup_on_feedback()`.execute(db);
  await sql`create trigger experiment_rollup_feedback_upd after update on feedback referencing old table as old_rows new table as new_rows for each statement execute function experiment_rollup_on_feedback()`.execute(db);
  await sql`create trigger experiment_rollup_feedback_del after delete on feedback referencing old table as old_rows for each statement execute function experiment_rollup_on_feedback()`.execute(db);

  // An exposure adds (removes) itself and what its request already has.
  await sql`
    create function experiment_rollup_on_exposures() returns trigger language plpgsql as $$
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
          select experiment_usage_delta(u, 1, x) from new_rows x join usage u on u.request_id = x.request_id and u.billable and u.step in ('infer', 'embed')));
        perform experiment_feedback_apply(array(
          select experiment_feedback_row_delta(f, 1, x) from new_rows x join feedback f on f.request_id = x.request_id and f.tenant_id = x.tenant_id));
      else
        perform 1 from requests r where r.id in (select request_id from old_rows) order by r.id for update;
        perform experiment_rollup_apply(array(
          select row(x.request_id, x.experiment_id, x.tenant_id, x.variant, -1, 1, 0, 0, 0, 0, 0, 0, 0, null, null)::experiment_rollup_delta from old_rows x
          union all
          select experiment_request_delta(r, -1, x) from old_rows x join requests r on r.id = x.request_id where r.status in ('succeeded', 'failed', 'cancelled')
          union all
          select experiment_usage_delta(u, -1, x) from old_rows x join usage u on u.request_id = x.request_id and u.billable and u.step in ('infer', 'embed')));
        perform experiment_feedback_apply(array(
          select experiment_feedback_row_delta(f, -1, x) from old_rows x join feedback f on f.request_id = x.request_id and f.tenant_id = x.tenant_id));
      end if;
      return null;
    end $$`.execute(db);
  await sql`create trigger experiment_rollup_exposures_ins after insert on experiment_exposures referencing new table as new_rows for each statement execute function experiment_rollup_on_exposures()`.execute(db);
  await sql`create trigger experiment_rollup_exposures_upd after update on experiment_exposures referencing old table as old_rows new table as new_rows for each statement execute function experiment_rollup_on_exposures()`.execute(db);
  await sql`create trigger experiment_rollup_exposures_del after delete on experiment_exposures referencing old table as old_rows for each statement execute function experiment_rollup_on_exposures()`.execute(db);

  // What is there already, summed once (the same contributions as the triggers').
  await sql`
    insert into experiment_rollups (experiment_id, tenant_id, variant, shard, exposures, succeeded, failed, cancelled, served, cost_sum, cost_sq, pt_sum, pt_sq, ct_sum, ct_sq)
    select x.experiment_id, x.tenant_id, x.variant, (abs(hashtext(x.request_id)) % 8)::smallint,
      count(*), count(*) filter (where r.status = 'succeeded'), count(*) filter (where r.status = 'failed'), count(*) filter (where r.status = 'cancelled'),
      count(u.request_id), coalesce(sum(u.cost_micros::numeric), 0), coalesce(sum(u.cost_micros::numeric ^ 2), 0),
      coalesce(sum(u.input_tokens::numeric), 0), coalesce(sum(u.input_tokens::numeric ^ 2), 0),
      coalesce(sum(u.output_tokens::numeric), 0), coalesce(sum(u.output_tokens::numeric ^ 2), 0)
    from experiment_exposures x
    left join requests r on r.id = x.request_id
    left join usage u on u.request_id = x.request_id and u.billable and u.step in ('infer', 'embed')
    group by 1, 2, 3, 4`.execute(db);
  await sql`
    insert into experiment_histograms (experiment_id, tenant_id, variant, metric, bucket, n)
    select x.experiment_id, x.tenant_id, x.variant, 'latency', experiment_bucket(u.latency_ms), count(*)
    from experiment_exposures x join usage u on u.request_id = x.request_id and u.billable and u.step in ('infer', 'embed')
    group by 1, 2, 3, 5`.execute(db);
  await sql`
    insert into experiment_histograms (experiment_id, tenant_id, variant, metric, bucket, n)
    select x.experiment_id, x.tenant_id, x.variant, 'ttft', experiment_bucket(r.ttft_ms), count(*)
    from experiment_exposures x join requests r on r.id = x.request_id and r.status = 'succeeded' and r.ttft_ms is not null
    group by 1, 2, 3, 5`.execute(db);
  await sql`
    insert into experiment_feedback_rollups (experiment_id, tenant_id, variant, metric, kind, n, trues, s, sq)
    select x.experiment_id, x.tenant_id, x.variant, f.metric, f.kind, count(*), count(*) filter (where f.value_bool),
      coalesce(sum(f.value_num::numeric), 0), coalesce(sum(f.value_num::numeric ^ 2), 0)
    from experiment_exposures x join feedback f on f.request_id = x.request_id and f.tenant_id = x.tenant_id
    group by 1, 2, 3, 4, 5`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const [table, triggers] of [
    ['experiment_exposures', ['exposures_ins', 'exposures_upd', 'exposures_del']], ['feedback', ['feedback_ins', 'feedback_upd', 'feedback_del']],
    ['usage', ['usage_ins', 'usage_upd', 'usage_del']], ['requests', ['requests_ins', 'requests_upd', 'requests_del']],
  ] as const) {
    for (const t of triggers) await sql.raw(`drop trigger if exists experiment_rollup_${t} on ${table}`).execute(db);
  }
  for (const f of [
    'experiment_rollup_on_exposures()', 'experiment_rollup_on_feedback()', 'experiment_rollup_on_usage()', 'experiment_rollup_on_requests()',
    'experiment_feedback_row_delta(feedback, int, experiment_exposures)', 'experiment_usage_delta(usage, int, experiment_exposures)',
    'experiment_request_delta(requests, int, experiment_exposures)', 'experiment_feedback_apply(experiment_feedback_delta[])',
    'experiment_rollup_apply(experiment_rollup_delta[])', 'experiment_bucket(integer)',
  ]) await sql.raw(`drop function if exists ${f}`).execute(db);
  await sql`drop type if exists experiment_feedback_delta`.execute(db);
  await sql`drop type if exists experiment_rollup_delta`.execute(db);
  await sql`drop table if exists experiment_feedback_rollups`.execute(db);
  await sql`drop table if exists experiment_histograms`.execute(db);
  await sql`drop table if exists experiment_rollups`.execute(db);
}
