/** Every migration, by name. Names sort in the order they run; add new ones at the end. */
import type { Migration } from 'kysely/migration';
import * as spine from './2026-11-21-0001-spine.js';

export const migrations: Record<string, Migration> = {
  '2026-11-21-0001-spine': spine,
};
