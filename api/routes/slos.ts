/**
 * SLOs and SLAs: `POST/GET /v1/admin/slos`, `GET/PATCH/DELETE /v1/admin/slos/{id}`,
 * `GET /v1/admin/slos/{id}/report?period=YYYY-MM`, and a plan's SLA
 * (`PUT/GET/DELETE /v1/admin/plans/{plan}/sla`). Operator keys only (`super_admin`,
 * `operator_finance`): objectives span tenants, and a plan's SLA changes what its tenants owe.
 * Reads need `billing:read`, writes `billing:write` (operator-only by policy). Measurements come
 * from the request and batch tables (`db/repositories/slos.ts`), never from Prometheus; writes are
 * audited.
 */
import { Router, type RequestHandler } from 'express';
import type { Db } from '../../db/database.js';
import type { SloRow } from '../../db/tables/index.js';
import { appendAudit } from '../../db/repositories/audit.js';
import {
  createSlo, deletePlanSla, deleteSlo, getPlanSla, getSlo, listSlos, measureSlo, measureSloByTenant, putPlanSla,
  sloDefinitionOf, updateSlo, type SloMeasurement,
} from '../../db/repositories/slos.js';
import { PERIOD_PATTERN, periodRange } from '../../domain/billing-calendar.js';
import { parsePlanSla, parseSloDefinition, patchSloDefinition, ppmToRatio, windowRange, type PlanSla, type SloDefinition } from '../../domain/slo.js';
import { attainment, errorBudget, isMet } from '../../domain/slo-math.js';
import type { Permission } from '../../domain/policy.js';
import { authOf, isOperator, requirePermission, type AuthContext } from '../auth.js';
import { HttpError, badRequest, notFound, onlyQuery } from '../errors.js';
import { listJson, pageOf } from '../pagination.js';

/** Guards a route: the permission, and an operator key (a tenant's key is refused even with the permission). */
function operator(deps: { db: Db }, permission: Permission): RequestHandler[] {
  return [requirePermission(deps, permission), (req, _res, next) => {
    if (!isOperator(authOf(req))) throw new HttpError('permission_error', 'SLOs and SLAs are managed by the operator.', 'permission_denied');
    next();
  }];
}

function definitionJson(r: SloRow) {
  return {
    id: r.id, object: 'slo', name: r.name, kind: r.kind, scope: { type: r.scope_type, value: r.scope_value },
    target: ppmToRatio(r.target_ppm), window: r.slo_window, threshold_ms: r.threshold_ms,
    created_at: r.created_at.toISOString(), updated_at: r.updated_at.toISOString(),
  };
}

function measurementJson(d: SloDefinition, m: SloMeasurement) {
  const budget = errorBudget(m, d.targetPpm);
  return {
    eligible: m.eligible, good: m.good, bad: m.eligible - m.good, attainment: attainment(m), met: isMet(m, d.targetPpm),
    error_budget: { allowed_bad: budget.allowedBad, bad: budget.bad, remaining: budget.remaining },
    percentile_ms: m.percentileMs,
  };
}

function planSlaJson(plan: string, s: PlanSla) {
  return {
    object: 'plan_sla', plan, metric: 'availability', window: 'calendar_month', target: ppmToRatio(s.targetPpm),
    credits: s.tiers.map((t) => ({ below: ppmToRatio(t.belowPpm), credit_percent: t.creditBps / 100 })),
  };
}

export function sloRoutes(deps: { db: Db }): Router {
  const router = Router();
  const db = deps.db;
  const audit = (auth: AuthContext, action: string, target: string, data: Record<string, unknown>) =>
    appendAudit(db, { actor: `key:${auth.keyId}`, tenantId: null, action, target, data, idempotencyKey: null, at: new Date() });

  /** The objective with its attainment and error budget over its window, as of now. */
  async function withStatus(row: SloRow, now: Date) {
    const d = sloDefinitionOf(row);
    const { start, end } = windowRange(d.window, now);
    const m = await measureSlo(db, d, start, end);
    return { ...definitionJson(row), status: { window_start: start.toISOString(), window_end: end.toISOString(), ...measurementJson(d, m) } };
  }

  async function found(id: string): Promise<SloRow> {
    const row = await getSlo(db, id);
    if (!row) throw notFound('SLO');
    return row;
  }

  router.post('/admin/slos', ...operator(deps, 'billing:write'), async (req, res) => {
    const auth = authOf(req);
    const d = parseSloDefinition(req.body);
    const row = await createSlo(db, d);
    await audit(auth, 'slo.created', `slo:${row.id}`, definitionJson(row));
    res.status(201).json(await withStatus(row, new Date()));
  });

  router.get('/admin/slos', ...operator(deps, 'billing:read'), async (req, res) => {
    onlyQuery(req, ['limit', 'after']);
    const { limit, after } = pageOf(req);
    const rows = await listSlos(db, { limit: limit + 1, after });
    const now = new Date();
    const page = listJson(rows, limit, (r) => withStatus(r, now));
    res.json({ ...page, data: await Promise.all(page.data) });
  });

  router.get('/admin/slos/:id', ...operator(deps, 'billing:read'), async (req, res) => {
    onlyQuery(req, []);
    res.json(await withStatus(await found(String(req.params.id)), new Date()));
  });

  router.patch('/admin/slos/:id', ...operator(deps, 'billing:write'), async (req, res) => {
    const auth = authOf(req);
    const current = await found(String(req.params.id));
    const next = patchSloDefinition(sloDefinitionOf(current), req.body);
    const row = await updateSlo(db, current.id, next);
    if (!row) throw notFound('SLO');
    await audit(auth, 'slo.updated', `slo:${row.id}`, { before: definitionJson(current), after: definitionJson(row) });
    res.json(await withStatus(row, new Date()));
  });

  router.delete('/admin/slos/:id', ...operator(deps, 'billing:write'), async (req, res) => {
    const auth = authOf(req);
    const row = await deleteSlo(db, String(req.params.id));
    if (!row) throw notFound('SLO');
    await audit(auth, 'slo.deleted', `slo:${row.id}`, definitionJson(row));
    res.json({ id: row.id, object: 'slo', deleted: true });
  });

  /**
   * The objective over a calendar month, as a whole and per tenant (every tenant with events in
   * it, by ID). The current month is measured so far (`complete: false`); a month not begun is refused.
   */
  router.get('/admin/slos/:id/report', ...operator(deps, 'billing:read'), async (req, res) => {
    onlyQuery(req, ['period']);
    const period = req.query.period;
    if (typeof period !== 'string' || !PERIOD_PATTERN.test(period)) throw badRequest("'period' must be a calendar month YYYY-MM (UTC)", 'period', 'invalid_value');
    const now = new Date();
    const range = periodRange(period);
    if (range.start > now) throw badRequest(`period ${period} has not begun`, 'period', 'period_not_started');
    const row = await found(String(req.params.id));
    const d = sloDefinitionOf(row);
    const end = range.end < now ? range.end : now;
    const [overall, tenants] = await Promise.all([measureSlo(db, d, range.start, end), measureSloByTenant(db, d, range.start, end)]);
    res.json({
      object: 'slo_report', slo: definitionJson(row), period, period_start: range.start.toISOString(), period_end: end.toISOString(),
      complete: range.end <= now, overall: measurementJson(d, overall),
      data: tenants.map((m) => ({ tenant_id: m.tenantId, ...measurementJson(d, m) })),
    });
  });

  router.put('/admin/plans/:plan/sla', ...operator(deps, 'billing:write'), async (req, res) => {
    const auth = authOf(req);
    const plan = String(req.params.plan);
    if (plan.length > 200) throw badRequest('plan must be at most 200 characters', 'plan', 'invalid_value');
    const sla = await putPlanSla(db, plan, parsePlanSla(req.body));
    await audit(auth, 'plan.sla_set', `plan:${plan}`, planSlaJson(plan, sla));
    res.json(planSlaJson(plan, sla));
  });

  router.get('/admin/plans/:plan/sla', ...operator(deps, 'billing:read'), async (req, res) => {
    const plan = String(req.params.plan);
    const sla = await getPlanSla(db, plan);
    if (!sla) throw notFound('SLA of this plan');
    res.json(planSlaJson(plan, sla));
  });

  router.delete('/admin/plans/:plan/sla', ...operator(deps, 'billing:write'), async (req, res) => {
    const auth = authOf(req);
    const plan = String(req.params.plan);
    if (!(await deletePlanSla(db, plan))) throw notFound('SLA of this plan');
    await audit(auth, 'plan.sla_removed', `plan:${plan}`, {});
    res.json({ object: 'plan_sla', plan, deleted: true });
  });

  return router;
}
