/**
 * Data retention: purges stored prompts and outputs older than each tenant's `retention_days`,
 * and response-cache entries that expired or outlived their tenant's retention.
 */
import type { Db } from '../db/database.js';
import { purgeExpiredContent, type PurgeResult } from '../db/repositories/retention.js';
import { purgeExpiredCache } from '../db/repositories/cache.js';
import type { Metrics } from '../runtime/metrics.js';
import { gaugeSharedCache } from './cache.js';

export function createRetentionActivities(deps: { db: Db; now: () => Date; metrics?: Metrics | null }) {
  return {
    /**
     * One bounded purge (at most `limit` requests and files, and `limit` cache entries); run by
     * the reconciler's schedule, which also recounts the cache table for its gauge.
     * Idempotent: only rows that still hold content change.
     */
    async purgeExpiredContent(input: { limit: number }): Promise<PurgeResult & { cacheEntries: number }> {
      const now = deps.now();
      const purged = await purgeExpiredContent(deps.db, now, input.limit);
      const cacheEntries = await purgeExpiredCache(deps.db, now, input.limit);
      await gaugeSharedCache(deps.db, deps.metrics ?? null);
      return { ...purged, cacheEntries };
    },
  };
}
