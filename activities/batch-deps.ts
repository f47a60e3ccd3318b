/** What the batch activities run on, and the page size they read files in. */
import type { Db } from '../db/database.js';
import type { Logger } from '../runtime/logger.js';

/** Lines read per page. */
export const PAGE = 1000;

/** The batch activities' dependencies. */
export type BatchDeps = { db: Db; now: () => Date; log?: Logger | null };
