/**
 * Experiments (issue 15): `POST/GET /v1/admin/experiments`, `GET /v1/admin/experiments/{id}`,
 * the lifecycle (`POST …/{id}/start|pause|resume|stop`), `GET …/{id}/results` and
 * `POST …/{id}/promote`. An experiment belongs to a tenant (a super admin's may be global);
 * a tenant's keys see their own and global ones, change only their own (a global one is 403),
 * and read a global one's results over their own traffic only. Every change is audited.
 * Semantics and statistics: docs/experiments.md.
 */
import { Router, type Request } from 'express';
import type { Db } from '../../db/database.js';
import type { VariantOverrides } from '../../db/tables/index.js';
import {
  createExperiment, experimentSums, getExperiment, keysOfTenant, listExperiments, transitionExperiment,
  type ExperimentWithVariants,
} from '../../db/repositories/experiments.js';
import { appendAudit } from '../../db/repositories/audit.js';
import { getModel } from '../../db/repositories/models.js';
import { getTenant } from '../../db/repositories/tenants.js';
import { allowsModel } from '../../domain/policy.js';
import { validateVariantOverrides } from '../../domain/sampling-params.js';
import { checkMaxTokens } from '../../domain/chat-validation.js';
import { isObject } from '../../domain/is-object.js';
import { validateMetadataRule } from '../../domain/experiment-targeting.js';
import { LIFECYCLE_ACTIONS, PROMOTABLE_FROM, transitionOf, type LifecycleAction } from '../../domain/experiment-lifecycle.js';
import { experimentResults, latencyValues } from '../../domain/experiment-results.js';
import { authOf, requirePermission, type AuthContext } from '../auth.js';
import { HttpError, badRequest, notFound } from '../errors.js';

/** Bounds of an experiment: variants, and each one's weight (assignment sums weights in a 64-bit bucket). */
const MAX_VARIANTS = 16;
const MAX_WEIGHT = 1_000_000;
/** Targeting bounds: keys named (metadata rules: domain/experiment-targeting.ts, OpenAI's metadata bounds). */
const MAX_TARGET_KEYS = 100;

const CREATE_FIELDS = ['name', 'model', 'variants', 'tenant_id', 'status', 'starts_at', 'ends_at', 'traffic_allocation', 'targeting', 'control'] as const;
const VARIANT_FIELDS = ['name', 'weight', 'overrides'] as const;
/** The audit action of each lifecycle call (`experiment.<past tense>`). */
const AUDIT_ACTION: Record<LifecycleAction, string> = { start: 'started', pause: 'paused', resume: 'resumed', stop: 'stopped' };

/** The experiment as the API shows it (snake_case). */
export function experimentJson(e: ExperimentWithVariants) {
  return {
    object: 'experiment' as const,
    id: e.id, name: e.name, model: e.model, tenant_id: e.tenantId, status: e.status,
    starts_at: e.startsAt?.toISOString() ?? null, ends_at: e.endsAt?.toISOString() ?? null,
    traffic_allocation: e.trafficAllocation,
    targeting: { key_ids: e.targetKeyIds, metadata: e.targetMetadata },
    control: e.controlVariant,
    promoted_variant: e.promotedVariant, promoted_at: e.promotedAt?.toISOString() ?? null,
    created_at: e.createdAt.toISOString(), updated_at: e.updatedAt.toISOString(),
    variants: e.variants.map((v) => ({ name: v.name, weight: v.weight, overrides: v.overrides })),
  };
}

function optionalTime(v: unknown, param: string): Date | null {
  if (v === undefined || v === null) return null;
  const d = typeof v === 'string' ? new Date(v) : null;
  if (d === null || Number.isNaN(d.getTime()) || !/^\d{4}-\d{2}-\d{2}T/.test(v as string)) throw badRequest(`'${param}' must be an ISO 8601 time`, param, 'invalid_type');
  return d;
}

/** What a caller sees: the operator every experiment, a tenant's key its own and global ones. */
function visibleTo(auth: AuthContext): string | null {
  return auth.role === 'super_admin' ? null : auth.tenantId ?? '';
}

async function audit(db: Db, auth: AuthContext, e: ExperimentWithVariants, action: string, data: Record<string, unknown>): Promise<void> {
  await appendAudit(db, { actor: `key:${auth.keyId}`, tenantId: e.tenantId, action, target: `experiment:${e.id}`, data, idempotencyKey: null, at: new Date() });
}

export function experimentRoutes(deps: { db: Db }): Router {
  const router = Router();
  const db = deps.db;

  /** The experiment the caller may change, or 404 (not visible) / 403 (a global one, to a tenant's key). */
  async function owned(req: Request): Promise<{ auth: AuthContext; exp: ExperimentWithVariants }> {
    const auth = authOf(req);
    const exp = await getExperiment(db, String(req.params.id), visibleTo(auth));
    if (!exp) throw notFound('Experiment');
    if (auth.role !== 'super_admin' && exp.tenantId !== auth.tenantId) {
      throw new HttpError('permission_error', 'A global experiment is changed by the operator only', 'experiment_not_owned');
    }
    return { auth, exp };
  }

  router.get('/admin/experiments', requirePermission(deps, 'experiments:read'), async (req, res) => {
    const rows = await listExperiments(db, visibleTo(authOf(req)));
    res.json({ object: 'list', data: rows.map(experimentJson), has_more: false });
  });

  router.get('/admin/experiments/:id', requirePermission(deps, 'experiments:read'), async (req, res) => {
    const exp = await getExperiment(db, String(req.params.id), visibleTo(authOf(req)));
    if (!exp) throw notFound('Experiment');
    res.json(experimentJson(exp));
  });

  /**
   * Creates an experiment. Each variant is checked as a request for its own model and parameters
   * would be: override values by the shared sampling validator (400 naming the field, e.g.
   * `variants[1].overrides.temperature`; a `system_template`'s placeholders too), its model must
   * exist (404) and be one the experiment's tenant and the creating key may use (403), its
   * `max_tokens` within that model's limit (400). Requests are checked again when a variant is
   * applied (activities/admission.ts). `status` is `running` (the default: it assigns at once,
   * within its window) or `draft` (started later by `…/start`).
   */
  router.post('/admin/experiments', requirePermission(deps, 'experiments:write'), async (req, res) => {
    const auth = authOf(req);
    const b = (req.body ?? {}) as Record<string, unknown>;
    if (!isObject(b)) throw badRequest('The body must be a JSON object');
    for (const k of Object.keys(b)) if (!(CREATE_FIELDS as readonly string[]).includes(k)) throw badRequest(`Unknown field '${k}'`, k, 'unknown_parameter');
    if (typeof b.name !== 'string' || b.name.trim() === '' || b.name.length > 256) throw badRequest("'name' is required (1 to 256 characters)", 'name');
    if (typeof b.model !== 'string' || !(await getModel(db, b.model))) throw notFound('Model');
    if (!Array.isArray(b.variants) || b.variants.length < 2) throw badRequest("'variants' needs at least two entries", 'variants');
    if (b.variants.length > MAX_VARIANTS) throw badRequest(`'variants' may have at most ${MAX_VARIANTS} entries`, 'variants', 'invalid_value');
    const status = b.status ?? 'running';
    if (status !== 'running' && status !== 'draft') throw badRequest("'status' must be 'running' or 'draft'", 'status', 'invalid_value');
    const startsAt = optionalTime(b.starts_at, 'starts_at');
    const endsAt = optionalTime(b.ends_at, 'ends_at');
    if (startsAt !== null && endsAt !== null && endsAt <= startsAt) throw badRequest("'ends_at' must be after 'starts_at'", 'ends_at', 'invalid_value');
    const allocation = b.traffic_allocation ?? 1;
    if (typeof allocation !== 'number' || !Number.isFinite(allocation) || allocation < 0 || allocation > 1) {
      throw badRequest("'traffic_allocation' must be a number from 0 to 1", 'traffic_allocation', 'invalid_value');
    }
    // A tenant admin's experiment applies to its own tenant only; a super admin's to everyone unless tenant_id is given.
    if (b.tenant_id !== undefined && b.tenant_id !== null && typeof b.tenant_id !== 'string') throw badRequest("'tenant_id' must be a string", 'tenant_id', 'invalid_type');
    const tenantId = auth.role === 'super_admin' ? (typeof b.tenant_id === 'string' ? b.tenant_id : null) : auth.tenantId;
    const tenant = tenantId === null ? null : await getTenant(db, tenantId);
    if (tenantId !== null && !tenant) throw notFound('Tenant');

    let targetKeyIds: string[] | null = null;
    let targetMetadata: Record<string, string | string[]> | null = null;
    if (b.targeting !== undefined && b.targeting !== null) {
      if (!isObject(b.targeting)) throw badRequest("'targeting' must be an object", 'targeting', 'invalid_type');
      for (const k of Object.keys(b.targeting)) {
        if (k !== 'key_ids' && k !== 'metadata') throw badRequest(`Unknown field 'targeting.${k}'`, `targeting.${k}`, 'unknown_parameter');
      }
      const ids = b.targeting.key_ids;
      if (ids !== undefined && ids !== null) {
        if (!Array.isArray(ids) || ids.length === 0 || ids.length > MAX_TARGET_KEYS || !ids.every((i) => typeof i === 'string')) {
          throw badRequest(`'targeting.key_ids' must be 1 to ${MAX_TARGET_KEYS} key IDs`, 'targeting.key_ids', 'invalid_value');
        }
        if (tenantId === null) throw badRequest("'targeting.key_ids' needs an experiment of one tenant", 'targeting.key_ids', 'invalid_value');
        const known = new Set(await keysOfTenant(db, tenantId, ids as string[]));
        const unknown = (ids as string[]).find((i) => !known.has(i));
        if (unknown !== undefined) throw new HttpError('not_found_error', `Key ${unknown} not found`, 'not_found', 'targeting.key_ids');
        targetKeyIds = [...known];
      }
      // The request's `metadata` (chat, streams, responses and their batch lines) must meet it.
      const rule = b.targeting.metadata;
      if (rule !== undefined && rule !== null) targetMetadata = validateMetadataRule(rule, 'targeting.metadata');
    }

    const variants: Array<{ name: string; weight: number; overrides: VariantOverrides }> = [];
    for (const [i, v] of b.variants.entries()) {
      if (!isObject(v)) throw badRequest(`variants[${i}] must be an object`, `variants[${i}]`, 'invalid_type');
      for (const k of Object.keys(v)) if (!(VARIANT_FIELDS as readonly string[]).includes(k)) throw badRequest(`Unknown field 'variants[${i}].${k}'`, `variants[${i}].${k}`, 'unknown_parameter');
      if (typeof v.name !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(v.name)) throw badRequest(`variants[${i}].name must match [A-Za-z0-9_-]{1,64}`, `variants[${i}].name`);
      const weight = v.weight ?? 1;
      if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT) {
        throw badRequest(`variants[${i}].weight must be an integer from 1 to ${MAX_WEIGHT}`, `variants[${i}].weight`);
      }
      const at = `variants[${i}].overrides`;
      const overrides = validateVariantOverrides(v.overrides, at);
      const model = overrides.model ?? b.model;
      const modelRow = await getModel(db, model);
      if (!modelRow) throw new HttpError('not_found_error', `The model '${model}' does not exist`, 'model_not_found', `${at}.model`);
      if (!allowsModel(auth.scopes, model) || (tenant?.allowed_models != null && !tenant.allowed_models.includes(model))) {
        throw new HttpError('permission_error', `The experiment's tenant or this key may not use model ${model}`, 'model_not_allowed', `${at}.model`);
      }
      checkMaxTokens(modelRow, overrides.max_tokens ?? null, `${at}.max_tokens`);
      variants.push({ name: v.name, weight, overrides });
    }
    if (new Set(variants.map((v) => v.name)).size !== variants.length) throw badRequest('variant names must be unique', 'variants');
    if (b.control !== undefined && b.control !== null && (typeof b.control !== 'string' || !variants.some((v) => v.name === b.control))) {
      throw badRequest("'control' must name one of the variants", 'control', 'invalid_value');
    }
    const exp = await createExperiment(db, {
      name: b.name.trim(), model: b.model, tenantId, status, startsAt, endsAt, trafficAllocation: allocation,
      targetKeyIds, targetMetadata, controlVariant: typeof b.control === 'string' ? b.control : null, variants,
    });
    await audit(db, auth, exp, 'experiment.created', { model: exp.model, status: exp.status, variants: variants.map((v) => ({ name: v.name, weight: v.weight })), traffic_allocation: allocation });
    res.status(201).json(experimentJson(exp));
  });

  /** `start` (draft → running), `pause` (running → paused), `resume` (paused → running), `stop` (→ stopped, final). */
  for (const action of LIFECYCLE_ACTIONS) {
    router.post(`/admin/experiments/:id/${action}`, requirePermission(deps, 'experiments:write'), async (req, res) => {
      const { auth, exp } = await owned(req);
      const { from, to } = transitionOf(action);
      const moved = from.includes(exp.status) ? await transitionExperiment(db, exp.id, from, to) : null;
      if (!moved) throw new HttpError('conflict_error', `An experiment that is ${exp.status} cannot ${action}`, 'invalid_experiment_transition');
      await audit(db, auth, moved, `experiment.${AUDIT_ACTION[action]}`, { from: exp.status, to });
      res.json(experimentJson(moved));
    });
  }

  /**
   * Makes a variant the model's default (for the experiment's tenant, or everyone for a global
   * one): requests outside any experiment get its overrides from now on; the experiment stops.
   */
  router.post('/admin/experiments/:id/promote', requirePermission(deps, 'experiments:write'), async (req, res) => {
    const b = (req.body ?? {}) as Record<string, unknown>;
    if (!isObject(b)) throw badRequest('The body must be a JSON object');
    for (const k of Object.keys(b)) if (k !== 'variant') throw badRequest(`Unknown field '${k}'`, k, 'unknown_parameter');
    const { auth, exp } = await owned(req);
    if (typeof b.variant !== 'string' || !exp.variants.some((v) => v.name === b.variant)) throw badRequest("'variant' must name one of the experiment's variants", 'variant', 'invalid_value');
    const moved = PROMOTABLE_FROM.includes(exp.status) ? await transitionExperiment(db, exp.id, PROMOTABLE_FROM, 'stopped', b.variant) : null;
    if (!moved) throw new HttpError('conflict_error', `An experiment that is ${exp.status} cannot be promoted`, 'invalid_experiment_transition');
    const overrides = exp.variants.find((v) => v.name === b.variant)?.overrides ?? {};
    await audit(db, auth, moved, 'experiment.promoted', { from: exp.status, variant: b.variant, model: exp.model, overrides });
    res.json(experimentJson(moved));
  });

  /** Per-variant results with their statistics (domain/experiment-results.ts), aggregated in SQL. */
  router.get('/admin/experiments/:id/results', requirePermission(deps, 'experiments:read'), async (req, res) => {
    const auth = authOf(req);
    const exp = await getExperiment(db, String(req.params.id), visibleTo(auth));
    if (!exp) throw notFound('Experiment');
    // A tenant's key reads a global experiment over its own traffic only.
    const scope = auth.role === 'super_admin' ? null : auth.tenantId;
    const sums = await experimentSums(db, exp.id, scope);
    const inputs = exp.variants.map((v) => {
      const s = sums.variants.find((x) => x.variant === v.name);
      const empty = { n: 0, sum: 0, sumSquares: 0 };
      return {
        name: v.name, weight: v.weight, exposures: s?.exposures ?? 0, succeeded: s?.succeeded ?? 0, failed: s?.failed ?? 0, cancelled: s?.cancelled ?? 0,
        costMicros: s?.costMicros ?? empty, promptTokens: s?.promptTokens ?? empty, completionTokens: s?.completionTokens ?? empty, latencyN: s?.latencyN ?? 0, ttftN: s?.ttftN ?? 0,
      };
    });
    // Exposures recorded for a variant the experiment does not have (written past the API) count against SRM too.
    const strays = sums.variants.filter((s) => !exp.variants.some((v) => v.name === s.variant)).reduce((a, s) => a + s.exposures, 0);
    const latencies = new Map(sums.variants.map((s) => [s.variant, latencyValues(s.latencyHistogram)]));
    const ttfts = new Map(sums.variants.map((s) => [s.variant, latencyValues(s.ttftHistogram)]));
    const body = experimentResults({
      experiment: { id: exp.id, status: exp.status, control: exp.controlVariant, variants: exp.variants },
      sums: inputs, feedback: sums.feedback.filter((f) => exp.variants.some((v) => v.name === f.variant)), latencies, ttfts,
    });
    res.json({ ...body, unknown_variant_exposures: strays, trustworthy: body.trustworthy && strays === 0, computed_at: new Date().toISOString() });
  });

  return router;
}
