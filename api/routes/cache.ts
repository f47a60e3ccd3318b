/**
 * `DELETE /v1/admin/cache?tenant=<id>&model=<id>`: drops a tenant's response-cache entries (of one
 * model, or all), in the shared table and, through the tenant's cache generation, in every
 * process's L1. A tenant admin drops its own tenant's (another tenant is 404); audited.
 */
import { Router } from 'express';
import type { Db } from '../../db/database.js';
import { invalidateCache } from '../../db/repositories/cache.js';
import { appendAudit } from '../../db/repositories/audit.js';
import { authOf, isOperator, requirePermission, tenantScope } from '../auth.js';
import { badRequest, notFound } from '../errors.js';

const ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A query parameter given at most once, checked against {@link ID}; null when absent. */
function idParam(value: unknown, name: string): string | null {
  if (value === undefined) return null;
  if (typeof value !== 'string' || !ID.test(value)) throw badRequest(`'${name}' must be one ID`, name, 'invalid_value');
  return value;
}

export function cacheRoutes(deps: { db: Db }): Router {
  const router = Router();

  router.delete('/admin/cache', requirePermission(deps, 'cache:write'), async (req, res) => {
    const auth = authOf(req);
    for (const field of Object.keys(req.query)) if (field !== 'tenant' && field !== 'model') throw badRequest(`unknown parameter '${field}'`, field);
    const asked = idParam(req.query.tenant, 'tenant');
    if (asked === null && isOperator(auth)) throw badRequest("'tenant' is required (an operator key has no tenant)", 'tenant', 'missing_parameter');
    const tenantId = tenantScope(auth, asked ?? auth.tenantId ?? '');
    const model = idParam(req.query.model, 'model');
    const done = await invalidateCache(deps.db, tenantId, model);
    if (!done) throw notFound('Tenant');
    await appendAudit(deps.db, {
      actor: `key:${auth.keyId}`, tenantId, action: 'cache.invalidated', target: `tenant:${tenantId}`,
      data: { model, entries: done.entries, generation: done.generation }, idempotencyKey: null, at: new Date(),
    });
    res.json({ object: 'cache.invalidation', tenant: tenantId, model, deleted_entries: done.entries });
  });

  return router;
}
