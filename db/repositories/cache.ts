/**
 * The response cache's shared level (L2, migration 0402): entries keyed by (tenant, key), every
 * statement scoped by the tenant; the tenant's settings and generation; invalidation and erase.
 */
import { sql } from 'kysely';
import { preparedQuery } from '../prepared-query.js';
import type { Db } from '../database.js';
import type { CachedResponseBody } from '../tables/index.js';

/** What a lookup needs to know of the tenant and the model, read in one query. */
export interface CacheSettings {
  enabled: boolean;
  /** The tenant's TTL, else the model's; null = the server default. */
  ttlSeconds: number | null;
  /** The tenant's `cache_generation`: entries (and in-process copies) of another are not served. */
  generation: number;
}

/** The tenant's cache settings for `model`; null when the tenant or the model does not exist. */
export async function cacheSettings(db: Db, tenantId: string, model: string): Promise<CacheSettings | null> {
  const row = await db
    .selectFrom('tenants as t')
    .innerJoin('models as m', (j) => j.on('m.id', '=', model))
    .select(['t.cache_enabled', 't.cache_ttl_seconds as tenant_ttl', 't.cache_generation', 'm.cache_ttl_seconds as model_ttl'])
    .where('t.id', '=', tenantId)
    .executeTakeFirst();
  if (!row) return null;
  return { enabled: row.cache_enabled, ttlSeconds: row.tenant_ttl ?? row.model_ttl, generation: Number(row.cache_generation) };
}

/** The tenant's live entry under `key` written in `generation`, or null. */
export async function getCacheEntry(db: Db, tenantId: string, key: string, generation: number, now: Date): Promise<{ body: CachedResponseBody; bytes: number; expiresAt: Date } | null> {
  const row = await db
    .selectFrom('response_cache')
    .select(['body', 'bytes', 'expires_at'])
    .where('tenant_id', '=', tenantId)
    .where('key', '=', key)
    .where('generation', '=', generation)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  return row ? { body: row.body, bytes: row.bytes, expiresAt: row.expires_at } : null;
}

export interface CachePut {
  tenantId: string;
  key: string;
  model: string;
  /** The generation the lookup saw: if an invalidation came since, nothing is stored. */
  generation: number;
  body: CachedResponseBody;
  bytes: number;
  expiresAt: Date;
}

/**
 * Stores an entry (replacing one under the same key) unless the tenant's generation moved on
 * since the lookup, then evicts the tenant's oldest entries beyond its caps (bytes and entries). Stores of
 * one tenant are serialised on a transaction-scoped advisory lock, so its cap holds under
 * concurrency; other tenants never wait on it. Returns whether the entry was stored.
 */
export async function putCacheEntry(db: Db, put: CachePut, cap: { maxBytes: number; maxEntries: number }): Promise<boolean> {
  if (put.bytes > cap.maxBytes || cap.maxEntries < 1) return false;
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtextextended(${`sluice_cache:${put.tenantId}`}, 0))`.execute(trx);
    const stored = await sql<{ key: string }>`
      insert into response_cache (tenant_id, key, model, generation, body, bytes, expires_at)
      select ${put.tenantId}, ${put.key}, ${put.model}, ${put.generation}, ${JSON.stringify(put.body)}::jsonb, ${put.bytes}, ${put.expiresAt}
      where exists (select 1 from tenants where id = ${put.tenantId} and cache_generation = ${put.generation} and erased_at is null)
      on conflict (tenant_id, key) do update set
        model = excluded.model, generation = excluded.generation, body = excluded.body, bytes = excluded.bytes,
        created_at = now(), expires_at = excluded.expires_at
      returning key`.execute(trx);
    if (stored.rows.length === 0) return false;
    // The tenant's newest entries that fit under its caps stay; the rest (oldest first) go. The
    // tenant holds at most maxEntries + 1 rows here, so this reads a bounded number of rows.
    await sql`delete from response_cache where tenant_id = ${put.tenantId} and key in (
      select key from (
        select key, row_number() over w as n, sum(bytes) over w as running from response_cache where tenant_id = ${put.tenantId}
        window w as (order by created_at desc, key)
      ) r where r.n > ${cap.maxEntries} or r.running > ${cap.maxBytes})`.execute(trx);
    return true;
  });
}

/**
 * Removes the tenant's entries (of one model, or all) and bumps its generation, so every
 * process's in-process copies stop being served and a store in flight is refused. Returns the
 * entries removed and the new generation.
 */
export async function invalidateCache(db: Db, tenantId: string, model: string | null): Promise<{ entries: number; generation: number } | null> {
  return db.transaction().execute(async (trx) => {
    const t = await trx
      .updateTable('tenants')
      .set((eb) => ({ cache_generation: eb('cache_generation', '+', 1) }))
      .where('id', '=', tenantId)
      .returning('cache_generation')
      .executeTakeFirst();
    if (!t) return null;
    let q = trx.deleteFrom('response_cache').where('tenant_id', '=', tenantId);
    if (model !== null) q = q.where('model', '=', model);
    const deleted = await q.executeTakeFirst();
    return { entries: Number(deleted.numDeletedRows), generation: Number(t.cache_generation) };
  });
}

/** Removes every entry of the tenant and bumps its generation, inside the caller's erase transaction. */
export async function eraseTenantCache(trx: Db, tenantId: string): Promise<number> {
  await trx.updateTable('tenants').set((eb) => ({ cache_generation: eb('cache_generation', '+', 1) })).where('id', '=', tenantId).execute();
  const deleted = await trx.deleteFrom('response_cache').where('tenant_id', '=', tenantId).executeTakeFirst();
  return Number(deleted.numDeletedRows);
}

/**
 * Removes at most `limit` entries that expired, or that are older than their tenant's
 * `retention_days` (a stored answer is stored content). Idempotent.
 */
export async function purgeExpiredCache(db: Db, now: Date, limit: number): Promise<number> {
  const { numAffectedRows } = await sql`delete from response_cache where (tenant_id, key) in (
    select c.tenant_id, c.key from response_cache c join tenants t on t.id = c.tenant_id
    where c.expires_at <= ${now}
       or (t.retention_days is not null and c.created_at < ${now}::timestamptz - make_interval(days => t.retention_days))
    limit ${limit})`.execute(db);
  return Number(numAffectedRows ?? 0);
}

/** Entries and bytes of the table (the `sluice_cache_bytes{level="l2"}` gauge). */
export async function cacheTotals(db: Db): Promise<{ entries: number; bytes: number }> {
  const row = await db
    .selectFrom('response_cache')
    .select((eb) => [eb.fn.countAll<number>().as('entries'), eb.fn.coalesce(eb.fn.sum<number>('bytes'), eb.lit(0)).as('bytes')])
    .executeTakeFirstOrThrow();
  return { entries: Number(row.entries), bytes: Number(row.bytes) };
}

/** The tenant's entries (for tests and the admin answer): count and bytes. */
export async function tenantCacheTotals(db: Db, tenantId: string): Promise<{ entries: number; bytes: number }> {
  const row = await db
    .selectFrom('response_cache')
    .select((eb) => [eb.fn.countAll<number>().as('entries'), eb.fn.coalesce(eb.fn.sum<number>('bytes'), eb.lit(0)).as('bytes')])
    .where('tenant_id', '=', tenantId)
    .executeTakeFirstOrThrow();
  return { entries: Number(row.entries), bytes: Number(row.bytes) };
}

/** Records whether the request was answered from the cache (the `x-sluice-cache` header). Idempotent. */
export async function setRequestCacheStatus(db: Db, requestId: string, tenantId: string, status: 'hit' | 'miss'): Promise<void> {
  await db.updateTable('requests').set({ cache: status }).where('id', '=', requestId).where('tenant_id', '=', tenantId).execute();
}

/** The model's cache price, micro-USD per million tokens (0 when the model is gone). */
export async function modelCachePrice(db: Db, model: string): Promise<number> {
  const row = await db.selectFrom('models').select('cache_micros_per_mtok').where('id', '=', model).executeTakeFirst();
  return Number(row?.cache_micros_per_mtok ?? 0);
}

/** Marks the request's settled usage row as answered from the cache. Idempotent. */
export async function markUsageCached(db: Db, requestId: string, step: string): Promise<void> {
  await db.updateTable('usage').set({ cached: true }).where('request_id', '=', requestId).where('step', '=', step).execute();
}

/** Whether the request's stream already has a chunk of `attempt` (a replayed hit publishes once). */
export async function hasStreamChunk(db: Db, requestId: string, attempt: string): Promise<boolean> {
  const row = await db.selectFrom('stream_chunks').select('id').where('request_id', '=', requestId).where('attempt', '=', attempt).limit(1).executeTakeFirst();
  return row !== undefined;
}

/** The statement of {@link requestCacheStatus}, compiled once and named (every sync request reads it). */
const requestCacheStatusQuery = preparedQuery({ requestId: 'string', tenantId: 'string' }, (db, { requestId, tenantId }) => db
  .selectFrom('requests').select('cache').where('id', '=', requestId).where('tenant_id', '=', tenantId));

/** The request's recorded cache status (null: not consulted, or no such request of the tenant). */
export async function requestCacheStatus(db: Db, requestId: string, tenantId: string): Promise<'hit' | 'miss' | null> {
  const row = (await db.executeQuery(requestCacheStatusQuery(db, { requestId, tenantId }))).rows[0];
  return row?.cache ?? null;
}
