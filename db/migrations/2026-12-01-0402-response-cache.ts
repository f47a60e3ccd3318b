/**
 * The response cache (issue 15): `response_cache` holds one tenant's stored completion per cache
 * key (the L2 level; L1 is in-process), `usage.cached` marks a ledger row answered from it, a model's
 * `cache_micros_per_mtok` prices such a row and `cache_ttl_seconds` bounds its entries' life,
 * a tenant's `cache_enabled` / `cache_ttl_seconds` are its settings, `cache_generation` is bumped by
 * every invalidation and erase (in-process copies older than it are dropped), and `requests.cache`
 * says whether a request was answered from the cache (`hit`), looked up without one (`miss`) or not
 * consulted (null), for the `x-sluice-cache` header.
 * Frozen in time: uses Kysely<any> and imports nothing of the app.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`create table response_cache (
    tenant_id text not null references tenants(id),
    key text not null,
    model text not null,
    generation bigint not null,
    body jsonb not null,
    bytes integer not null check (bytes > 0),
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    primary key (tenant_id, key)
  )`.execute(db);
  await sql`create index response_cache_expires_idx on response_cache (expires_at)`.execute(db);
  await sql`create index response_cache_tenant_model_idx on response_cache (tenant_id, model)`.execute(db);
  await sql`create index response_cache_tenant_created_idx on response_cache (tenant_id, created_at)`.execute(db);
  await sql`alter table tenants add column cache_enabled boolean not null default false`.execute(db);
  await sql`alter table tenants add column cache_ttl_seconds integer check (cache_ttl_seconds between 1 and 2592000)`.execute(db);
  await sql`alter table tenants add column cache_generation bigint not null default 0`.execute(db);
  await sql`alter table models add column cache_micros_per_mtok bigint not null default 0 check (cache_micros_per_mtok >= 0)`.execute(db);
  await sql`alter table models add column cache_ttl_seconds integer check (cache_ttl_seconds between 1 and 2592000)`.execute(db);
  await sql`alter table usage add column cached boolean not null default false`.execute(db);
  await sql`alter table requests add column cache text check (cache in ('hit', 'miss'))`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table requests drop column cache`.execute(db);
  await sql`alter table usage drop column cached`.execute(db);
  await sql`alter table models drop column cache_ttl_seconds`.execute(db);
  await sql`alter table models drop column cache_micros_per_mtok`.execute(db);
  await sql`alter table tenants drop column cache_generation`.execute(db);
  await sql`alter table tenants drop column cache_ttl_seconds`.execute(db);
  await sql`alter table tenants drop column cache_enabled`.execute(db);
  await sql`drop table response_cache`.execute(db);
}
