/**
 * Tenants and their keys (`/v1/admin/tenants…`), the operator's own keys (`/v1/admin/keys`), and
 * revoking and rotating any key (`/v1/admin/keys/{id}/revoke|rotate`). A key never creates or
 * rotates a key wider or longer-lived than itself (`keyGrantProblem`).
 */
import { Router } from 'express';
import type { Db } from '../../db/database.js';
import type { ApiKey, Role, Tenant, TenantUpdate } from '../../db/tables/index.js';
import { createTenant, getTenant, listTenants, updateTenant, type TenantLimits } from '../../db/repositories/tenants.js';
import { createKey, getKey, listKeys, revokeKey, rotateKey } from '../../db/repositories/keys.js';
import { appendAudit } from '../../db/repositories/audit.js';
import { eraseTenantContent } from '../../db/repositories/retention.js';
import { OPERATOR_ROLES, TENANT_ROLES, isOperatorRole, isRole, isValidScope, keyGrantProblem, type GrantedKey } from '../../domain/policy.js';
import { authOf, isOperator, requirePermission, tenantScope, type AuthContext } from '../auth.js';
import { HttpError, badRequest, notFound } from '../errors.js';
import { listJson, pageOf } from '../pagination.js';

/** Longest cache TTL a tenant may set: 30 days. */
const MAX_CACHE_TTL_SECONDS = 2_592_000;

/** The `cache` object of a tenant update: `{ enabled?: boolean, ttl_seconds?: 1..2592000 | null }` (README "Response cache"). */
function parseCacheSettings(value: unknown): TenantUpdate {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badRequest("'cache' must be an object", 'cache', 'invalid_value');
  const patch: TenantUpdate = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (k === 'enabled') {
      if (typeof v !== 'boolean') throw badRequest("'cache.enabled' must be a boolean", 'cache.enabled', 'invalid_value');
      patch.cache_enabled = v;
    } else if (k === 'ttl_seconds') {
      if (v !== null && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > MAX_CACHE_TTL_SECONDS)) {
        throw badRequest(`'cache.ttl_seconds' must be an integer from 1 to ${MAX_CACHE_TTL_SECONDS}, or null for the model's or the server's`, 'cache.ttl_seconds', 'invalid_value');
      }
      patch.cache_ttl_seconds = v;
    } else throw badRequest(`field 'cache.${k}' cannot be changed`, `cache.${k}`);
  }
  return patch;
}

export function tenantJson(t: Tenant) {
  return {
    id: t.id,
    object: 'tenant',
    name: t.name,
    plan: t.plan,
    status: t.status,
    limits: {
      requests_per_minute: t.requests_per_minute,
      tokens_per_minute: t.tokens_per_minute,
      max_concurrent: t.max_concurrent,
      monthly_budget_micros: t.monthly_budget_micros,
      allowed_models: t.allowed_models,
    },
    retention_days: t.retention_days,
    cache: { enabled: t.cache_enabled, ttl_seconds: t.cache_ttl_seconds },
    erased_at: t.erased_at ? Math.floor(t.erased_at.getTime() / 1000) : null,
    created_at: Math.floor(t.created_at.getTime() / 1000),
  };
}

export function keyJson(k: ApiKey) {
  return {
    id: k.id,
    object: 'api_key',
    tenant_id: k.tenant_id,
    name: k.name,
    prefix: k.prefix,
    role: k.role,
    scopes: k.scopes,
    expires_at: k.expires_at ? Math.floor(k.expires_at.getTime() / 1000) : null,
    revoked_at: k.revoked_at ? Math.floor(k.revoked_at.getTime() / 1000) : null,
    last_used_at: k.last_used_at ? Math.floor(k.last_used_at.getTime() / 1000) : null,
    created_at: Math.floor(k.created_at.getTime() / 1000),
  };
}

/** How long a rotated key keeps working by default, and at most (7 days). */
export const DEFAULT_ROTATION_GRACE_SECONDS = 3600;
export const MAX_ROTATION_GRACE_SECONDS = 7 * 24 * 3600;

/** Longest retention period that can be set (100 years); null keeps content forever. */
export const MAX_RETENTION_DAYS = 36_500;

const LIMIT_FIELDS = ['requests_per_minute', 'tokens_per_minute', 'max_concurrent', 'monthly_budget_micros'] as const;

/** Parses `limits` (all fields optional; null = unlimited). Unknown fields are refused, not ignored. */
function parseLimits(raw: unknown, base: TenantLimits): TenantLimits {
  if (raw === undefined) return base;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw badRequest("'limits' must be an object", 'limits');
  const out = { ...base };
  for (const [field, value] of Object.entries(raw)) {
    if ((LIMIT_FIELDS as readonly string[]).includes(field)) {
      if (value !== null && (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)) {
        throw badRequest(`limits.${field} must be a non-negative integer or null`, `limits.${field}`);
      }
      out[field as (typeof LIMIT_FIELDS)[number]] = value as number | null;
    } else if (field === 'allowed_models') {
      if (value !== null && (!Array.isArray(value) || !value.every((m) => typeof m === 'string' && m.length > 0 && m.length <= 128))) {
        throw badRequest('limits.allowed_models must be an array of model IDs or null', 'limits.allowed_models');
      }
      out.allowed_models = value as string[] | null;
    } else {
      throw badRequest(`unknown field limits.${field}`, `limits.${field}`);
    }
  }
  return out;
}

/** A required text field: a non-blank string of at most `max` characters, trimmed; else a 400 naming it. */
function requiredText(v: unknown, name: string, max = 200): string {
  if (typeof v !== 'string' || v.trim() === '' || v.length > max) throw badRequest(`'${name}' must be a non-empty string of at most ${max} characters`, name);
  return v.trim();
}

function limitsOf(t: Tenant): TenantLimits {
  return tenantJson(t).limits;
}

/** Refuses a key its creator may not make: 400 for a scope outside the role, 403 for anything wider than the creator. */
function assertGrantable(auth: AuthContext, key: GrantedKey): void {
  const problem = keyGrantProblem({ role: auth.role, scopes: auth.scopes, expiresAt: auth.expiresAt }, key);
  if (problem === null) return;
  if (problem.code === 'scope_not_in_role') throw badRequest(problem.message, problem.param, problem.code);
  throw new HttpError('permission_error', problem.message, problem.code, problem.param);
}

/** Parses a key to create: `{ name?, role, scopes?, expires_at? }`, the role one of `roles`. */
function keySpec(b: Record<string, unknown>, roles: readonly Role[], family: string): { name: string | null; role: Role; scopes: string[] | null; expiresAt: Date | null } {
  for (const field of Object.keys(b)) if (!['name', 'role', 'scopes', 'expires_at'].includes(field)) throw badRequest(`unknown field '${field}'`, field);
  if (!isRole(b.role) || !roles.includes(b.role)) {
    const code = isRole(b.role) ? (isOperatorRole(b.role) ? 'operator_role_on_tenant_key' : 'tenant_role_on_operator_key') : 'invalid_role';
    throw badRequest(`'role' of ${family} must be one of ${roles.join(', ')}`, 'role', code);
  }
  let scopes: string[] | null = null;
  if (b.scopes !== undefined && b.scopes !== null) {
    if (!Array.isArray(b.scopes) || b.scopes.length > 100 || !b.scopes.every((s) => typeof s === 'string' && isValidScope(s))) {
      throw badRequest("'scopes' must be an array of permissions (e.g. chat, batches) or model:<id>", 'scopes');
    }
    scopes = [...new Set(b.scopes as string[])];
  }
  let expiresAt: Date | null = null;
  if (b.expires_at !== undefined && b.expires_at !== null) {
    const t = typeof b.expires_at === 'number' ? new Date(b.expires_at * 1000) : new Date(String(b.expires_at));
    if (Number.isNaN(t.getTime()) || t.getTime() <= Date.now()) throw badRequest("'expires_at' must be a future time (unix seconds or ISO 8601)", 'expires_at');
    expiresAt = t;
  }
  const name = b.name === undefined || b.name === null ? null : requiredText(b.name, 'name');
  return { name, role: b.role, scopes, expiresAt };
}

async function audit(db: Db, auth: AuthContext, action: string, tenantId: string | null, target: string, data: Record<string, unknown>) {
  await appendAudit(db, { actor: `key:${auth.keyId}`, tenantId, action, target, data, idempotencyKey: null, at: new Date() });
}

export function tenantRoutes(deps: { db: Db }): Router {
  const router = Router();
  const db = deps.db;

  router.post('/admin/tenants', requirePermission(deps, 'tenants:create'), async (req, res) => {
    const auth = authOf(req);
    const b = (req.body ?? {}) as Record<string, unknown>;
    for (const field of Object.keys(b)) if (!['name', 'plan', 'limits'].includes(field)) throw badRequest(`unknown field '${field}'`, field);
    const empty: TenantLimits = { requests_per_minute: null, tokens_per_minute: null, max_concurrent: null, monthly_budget_micros: null, allowed_models: null };
    const tenant = await createTenant(db, {
      name: requiredText(b.name, 'name'),
      plan: b.plan === undefined ? 'standard' : requiredText(b.plan, 'plan', 50),
      limits: parseLimits(b.limits, empty),
    });
    await audit(db, auth, 'tenant.created', tenant.id, `tenant:${tenant.id}`, { after: tenantJson(tenant) });
    res.status(201).json(tenantJson(tenant));
  });

  router.get('/admin/tenants', requirePermission(deps, 'tenants:read'), async (req, res) => {
    const auth = authOf(req);
    const page = pageOf(req);
    const rows = await listTenants(db, { limit: page.limit + 1, after: page.after, only: isOperator(auth) ? null : auth.tenantId ?? '' });
    res.json(listJson(rows, page.limit, tenantJson));
  });

  router.get('/admin/tenants/:id', requirePermission(deps, 'tenants:read'), async (req, res) => {
    const id = tenantScope(authOf(req), String(req.params.id));
    const tenant = await getTenant(db, id);
    if (!tenant) throw notFound('Tenant');
    res.json(tenantJson(tenant));
  });

  router.patch('/admin/tenants/:id', requirePermission(deps, 'tenants:write'), async (req, res) => {
    const auth = authOf(req);
    const id = tenantScope(auth, String(req.params.id));
    const before = await getTenant(db, id);
    if (!before) throw notFound('Tenant');
    const b = (req.body ?? {}) as Record<string, unknown>;
    const patch: TenantUpdate = {};
    for (const [field, value] of Object.entries(b)) {
      if (field === 'name') patch.name = requiredText(value, 'name');
      else if (field === 'plan') patch.plan = requiredText(value, 'plan', 50);
      else if (field === 'status') {
        if (value !== 'active' && value !== 'suspended') throw badRequest("'status' must be active or suspended", 'status');
        patch.status = value;
      } else if (field === 'limits') Object.assign(patch, parseLimits(value, limitsOf(before)));
      else if (field === 'retention_days') {
        if (value !== null && (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > MAX_RETENTION_DAYS)) {
          throw badRequest(`'retention_days' must be an integer from 1 to ${MAX_RETENTION_DAYS}, or null to keep content`, 'retention_days', 'invalid_value');
        }
        patch.retention_days = value;
      } else if (field === 'cache') Object.assign(patch, parseCacheSettings(value));
      else throw badRequest(`field '${field}' cannot be changed`, field);
    }
    const after = await updateTenant(db, id, patch);
    if (!after) throw notFound('Tenant');
    await audit(db, auth, 'tenant.updated', id, `tenant:${id}`, { before: tenantJson(before), after: tenantJson(after) });
    res.json(tenantJson(after));
  });

  // Erases the tenant's stored content (request results and errors, file lines, batch metadata,
  // experiment subjects), revokes its keys and suspends it; usage, invoices and audit rows stay.
  router.post('/admin/tenants/:id/erase', requirePermission(deps, 'tenants:erase'), async (req, res) => {
    const auth = authOf(req);
    const id = tenantScope(auth, String(req.params.id));
    const before = await getTenant(db, id);
    if (!before) throw notFound('Tenant');
    const b = (req.body ?? {}) as Record<string, unknown>;
    for (const field of Object.keys(b)) if (field !== 'confirm') throw badRequest(`unknown field '${field}'`, field);
    if (b.confirm !== true) throw badRequest("erasing cannot be undone: send {\"confirm\": true}", 'confirm', 'confirmation_required');
    const erased = await eraseTenantContent(db, id, new Date());
    const after = await getTenant(db, id);
    if (!after) throw notFound('Tenant');
    await audit(db, auth, 'tenant.erased', id, `tenant:${id}`, { before: tenantJson(before), after: tenantJson(after), erased });
    res.json({ ...tenantJson(after), erased });
  });

  router.post('/admin/tenants/:id/keys', requirePermission(deps, 'keys:write'), async (req, res) => {
    const auth = authOf(req);
    const tenantId = tenantScope(auth, String(req.params.id));
    if (!(await getTenant(db, tenantId))) throw notFound('Tenant');
    const spec = keySpec((req.body ?? {}) as Record<string, unknown>, TENANT_ROLES, 'a tenant key');
    assertGrantable(auth, spec);
    const { key, secret } = await createKey(db, { tenantId, ...spec });
    await audit(db, auth, 'key.created', tenantId, `key:${key.id}`, { after: keyJson(key) });
    res.status(201).json({ ...keyJson(key), key: secret });
  });

  router.get('/admin/tenants/:id/keys', requirePermission(deps, 'keys:read'), async (req, res) => {
    const tenantId = tenantScope(authOf(req), String(req.params.id));
    const page = pageOf(req);
    res.json(listJson(await listKeys(db, tenantId, page.limit + 1, page.after), page.limit, keyJson));
  });

  /** The operator's own keys (no tenant): `super_admin` and `operator_finance`. */
  const operatorOnly = (auth: AuthContext) => {
    if (!isOperator(auth)) throw new HttpError('permission_error', 'Only operator keys manage operator keys', 'operator_only');
  };

  router.post('/admin/keys', requirePermission(deps, 'keys:write'), async (req, res) => {
    const auth = authOf(req);
    operatorOnly(auth);
    const spec = keySpec((req.body ?? {}) as Record<string, unknown>, OPERATOR_ROLES, 'an operator key');
    assertGrantable(auth, spec);
    const { key, secret } = await createKey(db, { tenantId: null, ...spec });
    await audit(db, auth, 'key.created', null, `key:${key.id}`, { after: keyJson(key) });
    res.status(201).json({ ...keyJson(key), key: secret });
  });

  router.get('/admin/keys', requirePermission(deps, 'keys:read'), async (req, res) => {
    operatorOnly(authOf(req));
    const page = pageOf(req);
    res.json(listJson(await listKeys(db, null, page.limit + 1, page.after), page.limit, keyJson));
  });

  /** The key, if the caller may act on it: its tenant's keys for tenant callers, any for operator callers; else 404. */
  async function scopedKey(auth: AuthContext, id: string): Promise<ApiKey> {
    const existing = await getKey(db, id);
    if (!existing) throw notFound('Key');
    if (existing.tenant_id === null) {
      if (!isOperator(auth)) throw notFound('Key');
    } else {
      tenantScope(auth, existing.tenant_id, 'Key');
    }
    return existing;
  }

  router.post('/admin/keys/:id/revoke', requirePermission(deps, 'keys:write'), async (req, res) => {
    const auth = authOf(req);
    const existing = await scopedKey(auth, String(req.params.id));
    const r = await revokeKey(db, existing.id, new Date());
    if (!r.ok && r.reason === 'last_super_admin') {
      throw new HttpError('conflict_error', 'This is the last active super-admin key (unscoped, not expiring): create or rotate another first', 'last_super_admin');
    }
    if (!r.ok) throw notFound('Key');
    await audit(db, auth, 'key.revoked', r.key.tenant_id, `key:${r.key.id}`, { before: keyJson(existing), after: keyJson(r.key) });
    res.json(keyJson(r.key));
  });

  router.post('/admin/keys/:id/rotate', requirePermission(deps, 'keys:write'), async (req, res) => {
    const auth = authOf(req);
    const existing = await scopedKey(auth, String(req.params.id));
    const b = (req.body ?? {}) as Record<string, unknown>;
    for (const field of Object.keys(b)) if (field !== 'grace_seconds') throw badRequest(`unknown field '${field}'`, field);
    const grace = b.grace_seconds ?? DEFAULT_ROTATION_GRACE_SECONDS;
    if (typeof grace !== 'number' || !Number.isSafeInteger(grace) || grace < 0 || grace > MAX_ROTATION_GRACE_SECONDS) {
      throw badRequest(`'grace_seconds' must be an integer from 0 to ${MAX_ROTATION_GRACE_SECONDS}`, 'grace_seconds', 'invalid_value');
    }
    // The new key has the old one's role, scopes and expiry: the caller must be able to create it.
    assertGrantable(auth, { role: existing.role, scopes: existing.scopes, expiresAt: existing.expires_at });
    const rotated = await rotateKey(db, existing.id, grace, new Date());
    if (!rotated) throw new HttpError('conflict_error', 'A revoked or expired key cannot be rotated', 'key_inactive');
    await audit(db, auth, 'key.rotated', existing.tenant_id, `key:${existing.id}`, {
      before: keyJson(rotated.before), after: keyJson(rotated.old), new_key: keyJson(rotated.key), grace_seconds: grace,
    });
    res.status(201).json({ ...keyJson(rotated.key), key: rotated.secret, rotated_from: { id: rotated.old.id, expires_at: keyJson(rotated.old).expires_at } });
  });

  return router;
}
