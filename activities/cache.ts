/**
 * The response cache's steps (README "Response cache"), on the control worker: `lookupCache`
 * after admission (L1 in this process, else the shared table, which fills L1), `storeCache` after a
 * generated answer was settled, `completeFromCache` in place of `complete` for a hit (settled at
 * the model's cache price, marked `cached`, audited, in one statement: `sluice_complete` with
 * `p_cached`; no circuit is touched: no deployment ran).
 * The L1 belongs to the factory's closure: one per worker process, bounded (`cache-lru.ts`).
 */
import type { Db } from '../db/database.js';
import type { CachedResponseBody } from '../db/tables/index.js';
import type { Metrics } from '../runtime/metrics.js';
import type { ResponseCacheConfig } from '../runtime/config.js';
import type { CacheDirective, ChatMessageInput, GenerateParams } from '../contracts/chat.js';
import { cacheKey } from '../domain/cache-key.js';
import { cacheSettings, cacheTotals, getCacheEntry, hasStreamChunk, putCacheEntry, setRequestCacheStatus } from '../db/repositories/cache.js';
import { isStreamClosedError, publishChunk } from '../db/repositories/streams.js';
import { createLru } from './cache-lru.js';
import { completeRequest } from '../db/repositories/completion.js';
import { afterSettle, type SettleInput } from './ledger.js';
import { afterOutcomes, outcomeEntry, requestOutcomeOf, safeOutcome, type OutcomeInput } from './audit.js';
import { withCost } from './admission.js';
import type { EventPublisher } from './events.js';
import type { Logger } from '../runtime/logger.js';

/** The stream attempt name of a replayed answer (`stream_chunks.attempt`). */
export const CACHE_STREAM_ATTEMPT = 'cache';

export interface CacheLookupInput {
  requestId: string;
  tenantId: string;
  /** The effective model and variant, as admitted. */
  model: string;
  variant: string | null;
  messages: ChatMessageInput[];
  /** The generation parameters as the backend would run them. */
  params: GenerateParams;
  directive: CacheDirective | null;
  /** A streamed request: a hit's text is published to the stream channel. */
  stream: boolean;
}

/** What the lookup decided: `skip` (not consulted: the tenant's cache is off), `miss` (store the answer), `hit`. */
export type CacheLookup =
  | { status: 'skip' }
  | { status: 'miss'; key: string; generation: number; ttlSeconds: number }
  | { status: 'hit'; entry: CachedResponseBody };

export interface CacheStoreInput {
  requestId: string;
  tenantId: string;
  model: string;
  key: string;
  generation: number;
  ttlSeconds: number;
  entry: CachedResponseBody;
}

/** An L1 slot: the stored answer, the generation it belongs to and when it expires. */
interface L1Entry {
  body: CachedResponseBody;
  model: string;
  generation: number;
  expiresAtMs: number;
}

export interface CacheDeps {
  db: Db;
  now: () => Date;
  metrics: Metrics | null;
  config: ResponseCacheConfig;
  /** Where a hit's settle and outcome publish their events (`budget.threshold`, `job.*`). */
  events: EventPublisher;
  /** Where a failure's raw detail goes (a hit's outcome has none). */
  log: Logger | null;
}

/** Bytes an answer takes (UTF-8 JSON), as stored and as counted against the caps. */
function bytesOf(body: CachedResponseBody): number {
  return Buffer.byteLength(JSON.stringify(body), 'utf8');
}

export function createCacheActivities(deps: CacheDeps) {
  const l1 = createLru<L1Entry>({ maxEntries: deps.config.l1MaxEntries, maxBytes: deps.config.l1MaxBytes, maxTenantBytes: deps.config.l1TenantMaxBytes });
  const gauge = () => {
    deps.metrics?.cacheBytes.set({ level: 'l1' }, l1.bytes);
    deps.metrics?.cacheEntries.set({ level: 'l1' }, l1.size);
  };
  const count = (input: { tenantId: string; model: string }, result: 'hit' | 'miss') =>
    deps.metrics?.cacheLookups.inc({ tenant: input.tenantId, model: input.model, result });

  /** The live entry under `key`: L1 (of the current generation, unexpired), else the table (then kept in L1). */
  async function find(tenantId: string, model: string, key: string, generation: number): Promise<CachedResponseBody | null> {
    const now = deps.now();
    const local = l1.get(key);
    if (local !== undefined) {
      if (local.generation === generation && local.expiresAtMs > now.getTime()) return local.body;
      l1.delete(key);
      gauge();
    }
    const row = await getCacheEntry(deps.db, tenantId, key, generation, now);
    if (!row) return null;
    l1.set(key, tenantId, row.bytes, { body: row.body, model, generation, expiresAtMs: row.expiresAt.getTime() });
    gauge();
    return row.body;
  }

  /** Publishes a hit's text as the stream's one chunk, once (a retried lookup finds it there). */
  async function replay(requestId: string, model: string, content: string): Promise<void> {
    if (content === '') return;
    if (await hasStreamChunk(deps.db, requestId, CACHE_STREAM_ATTEMPT)) return;
    try {
      await publishChunk(deps.db, { requestId, attempt: CACHE_STREAM_ATTEMPT, model, content });
    } catch (err) {
      // The client left: the stream route cancels the request; nothing to publish to.
      if (!isStreamClosedError(err)) throw err;
    }
  }

  return {
    /**
     * Looks the request up, unless the tenant's cache is off (and the request does not force
     * it) or it asked `no-cache` (then only its answer is stored). Records the request's
     * `hit`/`miss` for the `x-sluice-cache` header; a streamed hit's text goes to the stream channel.
     */
    async lookupCache(input: CacheLookupInput): Promise<CacheLookup> {
      const settings = await cacheSettings(deps.db, input.tenantId, input.model);
      if (!settings || (!settings.enabled && input.directive !== 'force') || input.directive === 'no-store') return { status: 'skip' };
      const key = cacheKey({ tenantId: input.tenantId, model: input.model, variant: input.variant, messages: input.messages, params: input.params });
      const miss = { status: 'miss' as const, key, generation: settings.generation, ttlSeconds: settings.ttlSeconds ?? deps.config.defaultTtlSeconds };
      const found = input.directive === 'no-cache' ? null : await find(input.tenantId, input.model, key, settings.generation);
      await setRequestCacheStatus(deps.db, input.requestId, input.tenantId, found ? 'hit' : 'miss');
      if (input.directive !== 'no-cache') count(input, found ? 'hit' : 'miss');
      if (!found) return miss;
      if (input.stream) await replay(input.requestId, input.model, found.content);
      return { status: 'hit', entry: found };
    },

    /**
     * Stores a generated answer under the lookup's key (and in L1), unless it is larger than
     * `maxEntryBytes` or the tenant's cache was invalidated since the lookup. Idempotent.
     */
    async storeCache(input: CacheStoreInput): Promise<{ stored: boolean }> {
      const bytes = bytesOf(input.entry);
      if (bytes > deps.config.maxEntryBytes) {
        deps.metrics?.cacheStores.inc({ result: 'too_large' });
        return { stored: false };
      }
      const expiresAt = new Date(deps.now().getTime() + input.ttlSeconds * 1000);
      const stored = await putCacheEntry(deps.db, {
        tenantId: input.tenantId, key: input.key, model: input.model, generation: input.generation, body: input.entry, bytes, expiresAt,
      }, { maxBytes: deps.config.tenantMaxBytes, maxEntries: deps.config.tenantMaxEntries });
      deps.metrics?.cacheStores.inc({ result: stored ? 'stored' : 'refused' });
      if (stored) {
        l1.set(input.key, input.tenantId, bytes, { body: input.entry, model: input.model, generation: input.generation, expiresAtMs: expiresAt.getTime() });
        gauge();
      }
      return { stored };
    },

    /**
     * Completes a request answered from the cache in one statement (`sluice_complete` with
     * `p_cached`, migration 0811): the usage row priced at the model's cache price and marked
     * `cached`, settled exactly once per request and step; the outcome on the request row; its
     * audit row (`cached`, with the settled cost). Unlike `complete`, no circuit is touched (the
     * statement's circuit reading is ignored). A retry finds all of it done and returns the first
     * call's cost. Name, input and result as before (settle then recordOutcome), so histories replay.
     */
    async completeFromCache(input: { settle: SettleInput; outcome: OutcomeInput }): Promise<{ costMicros: number }> {
      const settle: SettleInput = { ...input.settle, cached: true };
      const outcome = safeOutcome(deps, { ...input.outcome, summary: { ...input.outcome.summary, cached: true } });
      const r = await completeRequest(deps.db, { usage: settle, audit: outcomeEntry(outcome, deps.now()), outcome: requestOutcomeOf(outcome) });
      await afterSettle(deps, settle, r);
      await afterOutcomes(deps, [withCost(outcome, r.costMicros)], r.finished ? [r.finished] : []);
      return { costMicros: r.costMicros };
    },
  };
}

/** Counts the shared table for the `sluice_cache_bytes{level="l2"}` gauge (run with the retention purge). */
export async function gaugeSharedCache(db: Db, metrics: Metrics | null): Promise<void> {
  if (!metrics) return;
  const totals = await cacheTotals(db);
  metrics.cacheBytes.set({ level: 'l2' }, totals.bytes);
  metrics.cacheEntries.set({ level: 'l2' }, totals.entries);
}
