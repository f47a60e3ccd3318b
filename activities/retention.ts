/** Data retention: purges stored prompts and outputs older than each tenant's `retention_days`. */
import type { Db } from '../db/database.js';
import { purgeExpiredContent, type PurgeResult } from '../db/repositories/retention.js';

export function createRetentionActivities(deps: { db: Db; now: () => Date }) {
  return {
    /**
     * One bounded purge (at most `limit` requests and files); run by the reconciler's schedule.
     * Idempotent: only rows that still hold content change.
     */
    async purgeExpiredContent(input: { limit: number }): Promise<PurgeResult> {
      return purgeExpiredContent(deps.db, deps.now(), input.limit);
    },
  };
}
