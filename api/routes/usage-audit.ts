/** `GET /v1/admin/usage`, `GET /v1/admin/audit`, `GET /v1/admin/audit/verify` (experiments: `routes/experiments.ts`). */
import { Router } from 'express';
import type { Db } from '../../db/database.js';
import type { AuditRow } from '../../db/tables/index.js';
import { USAGE_GROUPS, summarizeUsage, type UsageGroup } from '../../db/repositories/usage.js';
import { appendAudit, listAudit, verifyAudit, writeCheckpoint, type AuditVerification } from '../../db/repositories/audit.js';
import { budgetStatus } from '../../db/repositories/quota.js';
import { periodOf, periodRange } from '../../domain/billing-calendar.js';
import { timeParam } from '../../domain/time-param.js';
import { authOf, isOperator, requirePermission, tenantScope } from '../auth.js';
import { HttpError, badRequest, onlyQuery } from '../errors.js';
import { MAX_PAGE, pageOf } from '../pagination.js';

function auditJson(r: AuditRow) {
  return {
    seq: r.seq, created_at: r.created_at.toISOString(), actor: r.actor, tenant_id: r.tenant_id, action: r.action,
    target: r.target, data: r.data, prev_hash: r.prev_hash, hash: r.hash,
  };
}

export function usageAuditRoutes(deps: { db: Db; config: { auditKey?: string | null } }): Router {
  const router = Router();
  const db = deps.db;

  router.get('/admin/usage', requirePermission(deps, 'usage:read'), async (req, res) => {
    onlyQuery(req, ['from', 'to', 'group_by', 'tenant_id']);
    const auth = authOf(req);
    const now = new Date();
    const from = timeParam(req.query.from, 'from', periodRange(periodOf(now)).start);
    const to = timeParam(req.query.to, 'to', new Date(now.getTime() + 1000));
    const groupBy = req.query.group_by === undefined ? null : String(req.query.group_by);
    if (groupBy !== null && !(USAGE_GROUPS as readonly string[]).includes(groupBy)) throw badRequest(`'group_by' must be one of ${USAGE_GROUPS.join(', ')}`, 'group_by');
    let tenantId: string | null = auth.tenantId;
    if (isOperator(auth)) tenantId = typeof req.query.tenant_id === 'string' ? req.query.tenant_id : null;
    else if (typeof req.query.tenant_id === 'string') tenantScope(auth, req.query.tenant_id);
    // A developer sees the usage of its own key; admins, analysts and finance the tenant's.
    const keyId = auth.role === 'developer' ? auth.keyId : null;
    const rows = await summarizeUsage(db, { tenantId, keyId, from, to, groupBy: groupBy as UsageGroup | null });
    // The tenant's budget this month: spend, held reservations and the 80%/100% thresholds crossed.
    const budget = tenantId === null ? null : await budgetStatus(db, tenantId, periodOf(now));
    res.json({ object: 'usage_summary', tenant_id: tenantId, from: from.toISOString(), to: to.toISOString(), group_by: groupBy, data: rows, budget });
  });

  router.get('/admin/audit', requirePermission(deps, 'audit:read'), async (req, res) => {
    onlyQuery(req, ['limit', 'before']);
    const auth = authOf(req);
    const { limit } = pageOf(req);
    const before = req.query.before === undefined ? null : Number(req.query.before);
    if (before !== null && !Number.isSafeInteger(before)) throw badRequest("'before' must be a sequence number", 'before');
    const rows = await listAudit(db, { tenantId: auth.role === 'super_admin' ? null : auth.tenantId ?? '', limit: Math.min(limit, MAX_PAGE) + 1, beforeSeq: before });
    res.json({ object: 'list', data: rows.slice(0, limit).map(auditJson), has_more: rows.length > limit });
  });

  // One verify at a time per process and mode: concurrent calls share the run in flight, so what
  // a caller with `audit:read` can make this process hash is one bounded verify at a time.
  const inFlight = new Map<'full' | 'incremental', Promise<AuditVerification>>();
  const shared = (full: boolean): Promise<AuditVerification> => {
    const mode = full ? 'full' : 'incremental';
    let run = inFlight.get(mode);
    if (!run) {
      run = verifyAudit(db, { auditKey: deps.config.auditKey ?? null, full }).finally(() => inFlight.delete(mode));
      inFlight.set(mode, run);
    }
    return run;
  };

  /**
   * Verifies the chain from its latest checkpoint (at most INCREMENTAL_VERIFY_MAX_ROWS rows per
   * call), or all of it with `?full=true` (super admin only), and reports the checkpoint's freshness.
   */
  router.get('/admin/audit/verify', requirePermission(deps, 'audit:read'), async (req, res) => {
    onlyQuery(req, ['full']);
    const auth = authOf(req);
    const fullParam = req.query.full;
    if (fullParam !== undefined && fullParam !== 'true' && fullParam !== 'false') throw badRequest("'full' must be true or false", 'full', 'invalid_value');
    const full = fullParam === 'true';
    if (full && auth.role !== 'super_admin') {
      throw new HttpError('permission_error', 'A full verify rehashes the whole chain: super admin only', 'full_verify_not_allowed', 'full');
    }
    const auditKey = deps.config.auditKey ?? null;
    const r = await shared(full);
    res.status(r.ok ? 200 : 409).json(
      r.ok
        ? {
          object: 'audit_verification', ok: true, mode: r.mode, rows: r.rows, head_seq: r.headSeq, head_hash: r.headHash,
          verified_from_seq: r.fromSeq, verified_to_seq: r.toSeq, complete: r.complete,
          checkpoint: r.checkpoint, checkpoints_signed: auditKey !== null,
          checkpoint_status: r.checkpoints.status,
          unprotected_rows: r.checkpoints.unprotectedRows,
          unprotected_since: r.checkpoints.unprotectedSince?.toISOString() ?? null,
          checkpoint_created_at: r.checkpoints.latest?.createdAt.toISOString() ?? null,
        }
        : { object: 'audit_verification', ok: false, mode: r.mode, rows: r.rows, first_bad_seq: r.firstBadSeq, reason: r.reason },
    );
  });

  /** Takes a checkpoint of the chain's head now (the control worker also takes one on its schedule). */
  router.post('/admin/audit/checkpoints', requirePermission(deps, 'audit:write'), async (req, res) => {
    const auth = authOf(req);
    const cp = await writeCheckpoint(db, deps.config.auditKey ?? null);
    await appendAudit(db, {
      actor: `key:${auth.keyId}`, tenantId: null, action: 'audit.checkpoint', target: `audit:${cp.seq}`,
      data: { seq: cp.seq, head_hash: cp.head_hash, signed: cp.signature !== null }, idempotencyKey: null, at: new Date(),
    });
    res.status(201).json({ object: 'audit_checkpoint', seq: cp.seq, head_hash: cp.head_hash, signed: cp.signature !== null, created_at: cp.created_at.toISOString() });
  });

  return router;
}
