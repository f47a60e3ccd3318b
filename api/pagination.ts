/** Bounded list pages: `?limit=` (1-100, default 20) and `?after=` (an ID cursor). */
import type { Request } from 'express';
import { badRequest } from './errors.js';

export const MAX_PAGE = 100;

export function pageOf(req: Request): { limit: number; after: string | null } {
  const rawLimit = req.query.limit;
  let limit = 20;
  if (rawLimit !== undefined) {
    limit = Number(rawLimit);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) throw badRequest(`limit must be an integer from 1 to ${MAX_PAGE}`, 'limit', 'invalid_value');
  }
  const after = typeof req.query.after === 'string' && req.query.after !== '' ? req.query.after : null;
  return { limit, after };
}

/** `{object: "list", data, has_more}` from a page fetched with limit + 1 rows. */
export function listJson<T>(rows: T[], limit: number, map: (row: T) => unknown) {
  const hasMore = rows.length > limit;
  const data = rows.slice(0, limit).map(map);
  return { object: 'list' as const, data, has_more: hasMore };
}
