/** `GET /v1/admin/usage`, `GET /v1/admin/audit`, `GET /v1/admin/audit/verify`, experiments. */
import { Router } from 'express';
import type { Db } from '../../db/database.js';
import type { AuditRow, VariantOverrides } from '../../db/tables/index.js';
import { USAGE_GROUPS, summarizeUsage, type UsageGroup } from '../../db/repositories/usage.js';
import { appendAudit, listAudit, verifyAudit, writeCheckpoint, type AuditVerification } from '../../db/repositories/audit.js';
import { createExperiment, listExperiments } from '../../db/repositories/experiments.js';
import { getModel } from '../../db/repositories/models.js';
import { getTenant } from '../../db/repositories/tenants.js';
import { allowsModel } from '../../domain/policy.js';
import { validateVariantOverrides } from '../../domain/sampling-params.js';
import { checkMaxTokens } from '../../domain/chat-validation.js';
import { budgetStatus } from '../../db/repositories/quota.js';
import { periodOf, periodRange } from '../../domain/billing-calendar.js';
import { timeParam } from '../../domain/time-param.js';
import { authOf, isOperator, requirePermission, tenantScope } from '../auth.js';
import { HttpError, badRequest, notFound } from '../errors.js';
import { MAX_PAGE, pageOf } from '../pagination.js';

/** Bounds of an experiment: variants, and each one's weight (assignment sums weights in a 64-bit bucket). */
const MAX_VARIANTS = 16;
const MAX_WEIGHT = 1_000_000;

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

  router.get('/admin/experiments', requirePermission(deps, 'experiments:read'), async (req, res) => {
    const auth = authOf(req);
    const rows = await listExperiments(db, auth.role === 'super_admin' ? null : auth.tenantId ?? '');
    res.json({ object: 'list', data: rows, has_more: false });
  });

  /**
   * Creates an experiment. Each variant is checked as a request for its own model and parameters
   * would be: override values by the shared sampling validator (400 naming the field, e.g.
   * `variants[1].overrides.temperature`), its model must exist (404) and be one the experiment's
   * tenant and the creating key may use (403), its `max_tokens` within that model's limit (400).
   * Requests are checked again when a variant is applied (activities/admission.ts).
   */
  router.post('/admin/experiments', requirePermission(deps, 'experiments:write'), async (req, res) => {
    const auth = authOf(req);
    const b = (req.body ?? {}) as Record<string, unknown>;
    if (typeof b.name !== 'string' || b.name.trim() === '') throw badRequest("'name' is required", 'name');
    if (typeof b.model !== 'string' || !(await getModel(db, b.model))) throw notFound('Model');
    if (!Array.isArray(b.variants) || b.variants.length < 2) throw badRequest("'variants' needs at least two entries", 'variants');
    if (b.variants.length > MAX_VARIANTS) throw badRequest(`'variants' may have at most ${MAX_VARIANTS} entries`, 'variants', 'invalid_value');
    // A tenant admin's experiment applies to its own tenant only; a super admin's to everyone unless tenant_id is given.
    const tenantId = auth.role === 'super_admin' ? (typeof b.tenant_id === 'string' ? b.tenant_id : null) : auth.tenantId;
    const tenant = tenantId === null ? null : await getTenant(db, tenantId);
    if (tenantId !== null && !tenant) throw notFound('Tenant');
    const variants: Array<{ name: string; weight: number; overrides: VariantOverrides }> = [];
    for (const [i, v] of b.variants.entries()) {
      const o = (v ?? {}) as Record<string, unknown>;
      if (typeof o.name !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(o.name)) throw badRequest(`variants[${i}].name must match [A-Za-z0-9_-]{1,64}`, `variants[${i}].name`);
      const weight = o.weight ?? 1;
      if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT) {
        throw badRequest(`variants[${i}].weight must be an integer from 1 to ${MAX_WEIGHT}`, `variants[${i}].weight`);
      }
      const at = `variants[${i}].overrides`;
      const overrides = validateVariantOverrides(o.overrides, at);
      const model = overrides.model ?? b.model;
      const modelRow = await getModel(db, model);
      if (!modelRow) throw new HttpError('not_found_error', `The model '${model}' does not exist`, 'model_not_found', `${at}.model`);
      if (!allowsModel(auth.scopes, model) || (tenant?.allowed_models != null && !tenant.allowed_models.includes(model))) {
        throw new HttpError('permission_error', `The experiment's tenant or this key may not use model ${model}`, 'model_not_allowed', `${at}.model`);
      }
      checkMaxTokens(modelRow, overrides.max_tokens ?? null, `${at}.max_tokens`);
      variants.push({ name: o.name, weight, overrides });
    }
    if (new Set(variants.map((v) => v.name)).size !== variants.length) throw badRequest('variant names must be unique', 'variants');
    const exp = await createExperiment(db, { name: b.name.trim(), model: b.model, tenantId, variants });
    res.status(201).json(exp);
  });

  return router;
}
