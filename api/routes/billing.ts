/**
 * Finance: billing runs, invoices (list, one with lines, reconciliation, void, re-issue), streamed
 * CSV/JSON exports of invoices and raw usage for a period, prices (list and negotiated, added from
 * a time on, never rewritten), plan rates and ledger adjustments. Reads (`billing:read`): tenant
 * `finance` and `tenant_admin` keys see their own tenant, operator keys all. Writes (`billing:write`:
 * runs, void, re-issue, adjustments, prices, plan rates) are the operator's only (`super_admin`,
 * `operator_finance`): no key of a tenant can change what the tenant owes.
 */
import { Router } from 'express';
import type { Client } from '@temporalio/client';
import { WorkflowFailedError } from '@temporalio/client';
import type { Db } from '../../db/database.js';
import type { Invoice, InvoiceLine } from '../../db/tables/index.js';
import { appendAudit } from '../../db/repositories/audit.js';
import { addAdjustment, addPlanRate, addPrice, priceHistory } from '../../db/repositories/billing.js';
import {
  INVOICE_EXPORT_COLUMNS, USAGE_EXPORT_COLUMNS, getInvoice, invoiceLines, listInvoices, liveInvoice,
  reconcileInvoice, streamInvoiceLines, streamUsage, voidInvoice,
} from '../../db/repositories/invoices.js';
import { getTenant } from '../../db/repositories/tenants.js';
import { listDayCloses } from '../../db/repositories/day-close.js';
import { dayRange, periodRange } from '../../domain/billing-calendar.js';
import { timeParam } from '../../domain/time-param.js';
import { intParam } from '../../domain/int-param.js';
import type { billing, billingRun, dayClose } from '../../workflows/billing.js';
import type { BillingOutput } from '../../contracts/billing.js';
import { CONTROL_TASK_QUEUE, billingRunWorkflowId, billingWorkflowId, dayCloseWorkflowId } from '../../contracts/ids.js';
import { DAY_PATTERN, PERIOD_PATTERN } from '../../domain/billing-calendar.js';
import { authOf, isOperator, requirePermission, tenantScope, type AuthContext } from '../auth.js';
import { HttpError, badRequest, notFound } from '../errors.js';
import { pageOf } from '../pagination.js';
import { EXPORT_QUERY_SLOTS, createQueryThrottle, streamExport } from '../csv-export.js';
import { DEFAULT_TENANT_CAPS, createConcurrencyGate, type TenantCaps } from '../tenant-caps.js';

export interface BillingRouteDeps {
  db: Db;
  temporal: Client;
  /** `tenantCaps.maxConcurrentExports` bounds the exports a tenant streams at once. @default DEFAULT_TENANT_CAPS */
  config?: { tenantCaps?: TenantCaps };
}

function periodParam(v: unknown, now: Date): string {
  if (typeof v !== 'string' || !PERIOD_PATTERN.test(v)) throw badRequest("'period' must be a calendar month YYYY-MM (UTC)", 'period', 'invalid_value');
  if (periodRange(v).end > now) throw new HttpError('conflict_error', `period ${v} has not ended yet (it ends ${periodRange(v).end.toISOString()})`, 'period_open', 'period');
  return v;
}

function dayParam(v: unknown, name: string): string {
  if (typeof v !== 'string' || !DAY_PATTERN.test(v)) throw badRequest(`'${name}' must be a day YYYY-MM-DD (UTC)`, name, 'invalid_value');
  try {
    dayRange(v);
  } catch {
    throw badRequest(`'${name}' is not a calendar day: ${v}`, name, 'invalid_value');
  }
  return v;
}

function optPeriod(v: unknown): string | null {
  if (v === undefined) return null;
  if (typeof v !== 'string' || !PERIOD_PATTERN.test(v)) throw badRequest("'period' must be YYYY-MM", 'period', 'invalid_value');
  return v;
}

/** The tenants the caller may act on for a query: its own, or (super admin) the one asked for or all. */
function scopeOf(auth: AuthContext, requested: unknown): string | null {
  if (isOperator(auth)) return typeof requested === 'string' && requested !== '' ? requested : null;
  if (typeof requested === 'string' && requested !== '') tenantScope(auth, requested);
  return auth.tenantId ?? '';
}

export function invoiceJson(i: Invoice, lines?: InvoiceLine[]) {
  return {
    id: i.id, object: 'invoice', tenant_id: i.tenant_id, period: i.period, version: i.version, status: i.status, currency: i.currency,
    period_start: i.period_start.toISOString(), period_end: i.period_end.toISOString(), closed_at: i.closed_at.toISOString(),
    plan: i.plan, plan_adjustment_bps: i.plan_adjustment_bps,
    usage_rows: i.usage_rows, usage_micros: i.usage_micros, plan_adjustment_micros: i.plan_adjustment_micros,
    adjustments_micros: i.adjustments_micros, total_micros: i.total_micros,
    late_usage: { rows: i.late_rows, micros: i.late_micros, note: i.late_rows > 0 ? `includes ${i.late_rows} usage rows dated before ${i.period} that arrived after that period was closed` : null },
    workflow_id: i.workflow_id, replaces_invoice_id: i.replaces_invoice_id,
    voided_at: i.voided_at?.toISOString() ?? null, voided_by: i.voided_by, void_reason: i.void_reason,
    created_at: i.created_at.toISOString(),
    ...(lines ? { lines: lines.map(lineJson) } : {}),
  };
}

function lineJson(l: InvoiceLine) {
  return {
    kind: l.kind, model: l.model, deployment_id: l.deployment_id, key_id: l.key_id, variant: l.variant, usage_period: l.usage_period,
    late: l.late, description: l.description, requests: l.requests, input_tokens: l.input_tokens, output_tokens: l.output_tokens,
    usage_micros: l.usage_micros, amount_micros: l.amount_micros,
  };
}

function formatParam(v: unknown): 'csv' | 'json' {
  if (v === undefined || v === 'csv') return 'csv';
  if (v === 'json') return 'json';
  throw badRequest("'format' must be csv or json", 'format', 'invalid_value');
}

export function billingRoutes(deps: BillingRouteDeps): Router {
  const router = Router();
  const db = deps.db;
  const throttle = createQueryThrottle(EXPORT_QUERY_SLOTS);
  const exportGate = createConcurrencyGate((deps.config?.tenantCaps ?? DEFAULT_TENANT_CAPS).maxConcurrentExports, 'concurrent_exports_limit', 'exports');
  const audit = (auth: AuthContext, tenantId: string | null, action: string, target: string, data: Record<string, unknown>) =>
    appendAudit(db, { actor: `key:${auth.keyId}`, tenantId, action, target, data, idempotencyKey: null, at: new Date() });

  async function startBilling(tenantId: string, period: string) {
    const workflowId = billingWorkflowId(tenantId, period);
    const handle = await deps.temporal.workflow.start<typeof billing>('billing', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId,
      args: [{ tenantId, period }],
      // A run in progress is joined, a finished one re-runs (and finds its invoice).
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    });
    return { handle, workflowId, runId: handle.firstExecutionRunId };
  }

  async function outcome(handle: { result(): Promise<BillingOutput> }) {
    try {
      const r = await handle.result();
      return { status: 'succeeded', invoice_id: r.invoiceId, version: r.version, created: r.created, total_micros: r.totalMicros, error: null };
    } catch (err) {
      const message = err instanceof WorkflowFailedError && err.cause ? err.cause.message : err instanceof Error ? err.message : String(err);
      return { status: 'failed', invoice_id: null, version: null, created: null, total_micros: null, error: message };
    }
  }

  router.post('/admin/billing/runs', requirePermission(deps, 'billing:write'), async (req, res) => {
    const auth = authOf(req);
    const b = (req.body ?? {}) as Record<string, unknown>;
    if (b.day !== undefined && b.period !== undefined) throw badRequest("Give 'period' (a month to invoice) or 'day' (a day to close), not both", 'day');
    const day = b.day === undefined ? null : dayParam(b.day, 'day');
    if (day !== null && dayRange(day).end > new Date()) {
      throw new HttpError('conflict_error', `day ${day} has not ended yet (it ends ${dayRange(day).end.toISOString()})`, 'period_open', 'day');
    }
    const period = day === null ? periodParam(b.period, new Date()) : null;
    const wait = b.wait === true;
    const tenantId = isOperator(auth) ? (typeof b.tenant_id === 'string' ? b.tenant_id : null) : tenantScope(auth, typeof b.tenant_id === 'string' ? b.tenant_id : (auth.tenantId ?? ''));
    if (tenantId !== null && !(await getTenant(db, tenantId))) throw notFound('Tenant');
    if (day !== null) {
      await audit(auth, tenantId, 'billing.day_close', tenantId === null ? `day:${day}` : `tenant:${tenantId}`, { day });
      const workflowId = dayCloseWorkflowId(day, tenantId);
      const handle = await deps.temporal.workflow.start<typeof dayClose>('dayClose', {
        taskQueue: CONTROL_TASK_QUEUE, workflowId, args: [{ day, tenantId }],
        workflowIdConflictPolicy: 'USE_EXISTING', workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      });
      let result: Record<string, unknown> | null = null;
      if (wait) {
        try {
          const r = await handle.result();
          result = { status: 'succeeded', created: r.created, tenants: r.tenants, error: null };
        } catch (err) {
          result = { status: 'failed', created: null, tenants: null, error: err instanceof WorkflowFailedError && err.cause ? err.cause.message : String(err) };
        }
      }
      res.status(wait ? 200 : 202).json({ object: 'billing.day_close', day, tenant_id: tenantId, workflow_id: workflowId, run_id: handle.firstExecutionRunId, ...(result ? { result } : {}) });
      return;
    }
    if (period === null) throw badRequest("'period' is required", 'period');
    await audit(auth, tenantId, 'billing.run', tenantId === null ? `period:${period}` : `tenant:${tenantId}`, { period });
    if (tenantId !== null) {
      const started = await startBilling(tenantId, period);
      const result = wait ? await outcome(started.handle) : null;
      res.status(wait ? 200 : 202).json({ object: 'billing.run', period, runs: [{ tenant_id: tenantId, workflow_id: started.workflowId, run_id: started.runId, ...(result ? { result } : {}) }] });
      return;
    }
    const workflowId = billingRunWorkflowId(period);
    const handle = await deps.temporal.workflow.start<typeof billingRun>('billingRun', {
      taskQueue: CONTROL_TASK_QUEUE, workflowId, args: [{ period, tenantIds: null }],
      workflowIdConflictPolicy: 'USE_EXISTING', workflowIdReusePolicy: 'ALLOW_DUPLICATE',
    });
    const result = wait ? await handle.result() : null;
    res.status(wait ? 200 : 202).json({ object: 'billing.run', period, runs: [{ tenant_id: null, workflow_id: workflowId, run_id: handle.firstExecutionRunId, ...(result ? { result } : {}) }] });
  });

  router.get('/admin/usage/days', requirePermission(deps, 'billing:read'), async (req, res) => {
    const auth = authOf(req);
    const from = dayParam(req.query.from, 'from');
    const to = dayParam(req.query.to, 'to');
    if (to <= from) throw badRequest("'to' must be after 'from'", 'to', 'invalid_value');
    if (dayRange(to).start.getTime() - dayRange(from).start.getTime() > 366 * 86_400_000) throw badRequest('At most 366 days at a time', 'to', 'invalid_value');
    const rows = await listDayCloses(db, { tenantId: scopeOf(auth, req.query.tenant_id), from, to });
    res.json({
      object: 'list', has_more: false,
      data: rows.map((r) => ({ object: 'usage.day_close', ...r, closed_at: r.closed_at.toISOString() })),
    });
  });

  router.get('/admin/invoices', requirePermission(deps, 'billing:read'), async (req, res) => {
    const auth = authOf(req);
    const { limit, after } = pageOf(req);
    const status = req.query.status;
    if (status !== undefined && status !== 'issued' && status !== 'void') throw badRequest("'status' must be issued or void", 'status', 'invalid_value');
    const rows = await listInvoices(db, { tenantId: scopeOf(auth, req.query.tenant_id), period: optPeriod(req.query.period), status: (status ?? null) as 'issued' | 'void' | null, limit: limit + 1, after });
    res.json({ object: 'list', data: rows.slice(0, limit).map((i) => invoiceJson(i)), has_more: rows.length > limit });
  });

  router.get('/admin/invoices/export', requirePermission(deps, 'billing:read'), async (req, res) => {
    const auth = authOf(req);
    const period = optPeriod(req.query.period);
    if (period === null) throw badRequest("'period' is required", 'period');
    const format = formatParam(req.query.format);
    const tenantId = scopeOf(auth, req.query.tenant_id);
    await streamExport(res, exportGate.enter(tenantId ?? '*'), format, `invoices-${period}`, INVOICE_EXPORT_COLUMNS, (onRows) => streamInvoiceLines(db, { tenantId, period, throttle }, onRows));
  });

  router.get('/admin/usage/export', requirePermission(deps, 'billing:read'), async (req, res) => {
    const auth = authOf(req);
    const period = optPeriod(req.query.period);
    if (period === null) throw badRequest("'period' is required", 'period');
    const format = formatParam(req.query.format);
    const tenantId = scopeOf(auth, req.query.tenant_id);
    const { start, end } = periodRange(period);
    await streamExport(res, exportGate.enter(tenantId ?? '*'), format, `usage-${period}`, USAGE_EXPORT_COLUMNS, (onRows) => streamUsage(db, { tenantId, start, end, throttle }, onRows));
  });

  async function scopedInvoice(auth: AuthContext, id: string): Promise<Invoice> {
    const inv = await getInvoice(db, id);
    if (!inv || (!isOperator(auth) && inv.tenant_id !== auth.tenantId)) throw notFound('Invoice');
    return inv;
  }

  router.get('/admin/invoices/:id', requirePermission(deps, 'billing:read'), async (req, res) => {
    const inv = await scopedInvoice(authOf(req), String(req.params.id));
    res.json(invoiceJson(inv, await invoiceLines(db, inv.id)));
  });

  router.get('/admin/invoices/:id/reconciliation', requirePermission(deps, 'billing:read'), async (req, res) => {
    const inv = await scopedInvoice(authOf(req), String(req.params.id));
    const r = await reconcileInvoice(db, inv.id);
    if (!r) throw notFound('Invoice');
    res.status(r.ok ? 200 : 409).json({
      object: 'invoice.reconciliation', invoice_id: inv.id, ok: r.ok, problems: r.problems, ledger_micros: r.ledgerMicros,
      total_micros: r.totalMicros, unbilled_rows: r.unbilledRows, unbilled_micros: r.unbilledMicros,
    });
  });

  router.post('/admin/invoices/:id/void', requirePermission(deps, 'billing:write'), async (req, res) => {
    const auth = authOf(req);
    const inv = await scopedInvoice(auth, String(req.params.id));
    const b = (req.body ?? {}) as Record<string, unknown>;
    if (typeof b.reason !== 'string' || b.reason.trim() === '' || b.reason.length > 1000) throw badRequest("'reason' is required (at most 1000 characters)", 'reason');
    const voided = await voidInvoice(db, inv.id, `key:${auth.keyId}`, b.reason.trim(), new Date());
    if (!voided) throw new HttpError('conflict_error', `invoice ${inv.id} is already void`, 'invoice_void');
    await audit(auth, inv.tenant_id, 'invoice.voided', `invoice:${inv.id}`, { period: inv.period, version: inv.version, total_micros: inv.total_micros, reason: b.reason.trim() });
    res.json(invoiceJson(voided));
  });

  router.post('/admin/invoices/:id/reissue', requirePermission(deps, 'billing:write'), async (req, res) => {
    const auth = authOf(req);
    const inv = await scopedInvoice(auth, String(req.params.id));
    if (inv.status !== 'void') throw new HttpError('conflict_error', `invoice ${inv.id} is not void: void it first`, 'invoice_not_void');
    if (await liveInvoice(db, inv.tenant_id, inv.period)) throw new HttpError('conflict_error', `tenant ${inv.tenant_id} already has a live invoice for ${inv.period}`, 'invoice_exists');
    await audit(auth, inv.tenant_id, 'invoice.reissue', `invoice:${inv.id}`, { period: inv.period, replaces_version: inv.version });
    const started = await startBilling(inv.tenant_id, inv.period);
    const result = await outcome(started.handle);
    const fresh = result.invoice_id ? await getInvoice(db, result.invoice_id) : null;
    if (!fresh) throw new HttpError('server_error', `re-issue failed: ${result.error ?? 'no invoice'}`, 'billing_failed');
    res.status(201).json(invoiceJson(fresh, await invoiceLines(db, fresh.id)));
  });

  router.post('/admin/usage/adjustments', requirePermission(deps, 'billing:write'), async (req, res) => {
    const auth = authOf(req);
    const b = (req.body ?? {}) as Record<string, unknown>;
    if (typeof b.tenant_id !== 'string') throw badRequest("'tenant_id' is required", 'tenant_id');
    const tenantId = tenantScope(auth, b.tenant_id);
    if (!(await getTenant(db, tenantId))) throw notFound('Tenant');
    const amount = intParam(b.amount_micros, 'amount_micros', -1_000_000_000_000, 1_000_000_000_000);
    if (amount === 0) throw badRequest("'amount_micros' must not be 0", 'amount_micros', 'invalid_value');
    if (typeof b.reason !== 'string' || b.reason.trim() === '' || b.reason.length > 1000) throw badRequest("'reason' is required (at most 1000 characters)", 'reason');
    const usageId = b.usage_id === undefined || b.usage_id === null ? null : intParam(b.usage_id, 'usage_id', 1);
    const idem = typeof b.idempotency_key === 'string' ? `${tenantId}:${b.idempotency_key}` : null;
    const adj = await addAdjustment(db, {
      tenantId, usageId, amountMicros: amount, reason: b.reason.trim(), actor: `key:${auth.keyId}`,
      effectiveAt: timeParam(b.effective_at, 'effective_at', new Date()), idempotencyKey: idem,
    });
    if (!adj) throw notFound('Usage row');
    await audit(auth, tenantId, 'usage.adjusted', `adjustment:${adj.id}`, { amount_micros: adj.amount_micros, reason: adj.reason, usage_id: adj.usage_id });
    res.status(201).json({
      id: adj.id, object: 'usage.adjustment', tenant_id: adj.tenant_id, usage_id: adj.usage_id, amount_micros: adj.amount_micros,
      reason: adj.reason, actor: adj.actor, effective_at: adj.effective_at.toISOString(), created_at: adj.created_at.toISOString(),
    });
  });

  // Operator-only, like price changes: the history holds every tenant's negotiated rates.
  router.get('/admin/deployments/:id/prices', requirePermission(deps, 'billing:write'), async (req, res) => {
    const rows = await priceHistory(db, String(req.params.id));
    res.json({ object: 'list', data: rows.map((p) => ({ ...p, effective_from: p.effective_from.toISOString() })), has_more: false });
  });

  router.post('/admin/deployments/:id/prices', requirePermission(deps, 'billing:write'), async (req, res) => {
    const auth = authOf(req);
    const b = (req.body ?? {}) as Record<string, unknown>;
    const tenantId = typeof b.tenant_id === 'string' ? b.tenant_id : null;
    const price = {
      deploymentId: String(req.params.id), tenantId,
      inputMicrosPerMtok: intParam(b.input_micros_per_mtok, 'input_micros_per_mtok', 0),
      outputMicrosPerMtok: intParam(b.output_micros_per_mtok, 'output_micros_per_mtok', 0),
      requestMicros: b.request_micros === undefined ? 0 : intParam(b.request_micros, 'request_micros', 0),
      batchDiscountBps: b.batch_discount_bps === undefined ? 0 : intParam(b.batch_discount_bps, 'batch_discount_bps', 0, 10_000),
      effectiveFrom: timeParam(b.effective_from, 'effective_from', new Date()),
    };
    if (tenantId !== null && b.batch_discount_bps !== undefined) throw badRequest("'batch_discount_bps' belongs to list prices; negotiated rates keep it", 'batch_discount_bps');
    const r = await addPrice(db, price);
    if (!r.ok) {
      if (r.reason === 'deployment_missing') throw notFound('Deployment');
      if (r.reason === 'tenant_missing') throw notFound('Tenant');
      if (r.reason === 'duplicate') throw new HttpError('conflict_error', 'a price effective from that instant exists', 'price_exists', 'effective_from');
      throw new HttpError('conflict_error', 'usage at or after effective_from was already priced: prices never rewrite history', 'price_history_immutable', 'effective_from');
    }
    await audit(auth, tenantId, 'price.added', `deployment:${price.deploymentId}`, { ...price, effectiveFrom: price.effectiveFrom.toISOString(), id: r.price.id });
    res.status(201).json({
      id: r.price.id, object: tenantId === null ? 'price' : 'tenant_price', deployment_id: price.deploymentId, tenant_id: tenantId,
      input_micros_per_mtok: price.inputMicrosPerMtok, output_micros_per_mtok: price.outputMicrosPerMtok, request_micros: price.requestMicros,
      batch_discount_bps: price.batchDiscountBps, effective_from: r.price.effective_from.toISOString(),
    });
  });

  router.post('/admin/plans/:plan/rates', requirePermission(deps, 'billing:write'), async (req, res) => {
    const auth = authOf(req);
    const b = (req.body ?? {}) as Record<string, unknown>;
    const plan = String(req.params.plan);
    const bps = intParam(b.adjustment_bps, 'adjustment_bps', -10_000, 100_000);
    const from = timeParam(b.effective_from, 'effective_from', new Date());
    if (!(await addPlanRate(db, plan, bps, from))) throw new HttpError('conflict_error', 'a rate effective from that instant exists', 'rate_exists', 'effective_from');
    await audit(auth, null, 'plan.rate_added', `plan:${plan}`, { adjustment_bps: bps, effective_from: from.toISOString() });
    res.status(201).json({ object: 'plan_rate', plan, adjustment_bps: bps, effective_from: from.toISOString() });
  });

  return router;
}
