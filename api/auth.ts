/**
 * Bearer-key authentication and permission guards. The key is checked for shape before any
 * database work (a malformed header is a fast 401 and never reaches SQL), then looked up by its
 * SHA-256 hash; revocation and expiry are read on every request, so they apply at once on every replica.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Db } from '../db/database.js';
import type { Role } from '../db/tables/index.js';
import { findKeyBySecret, touchKey } from '../db/repositories/keys.js';
import { appendAudit, appendAuditMany } from '../db/repositories/audit.js';
import { allows, type Permission } from '../domain/policy.js';
import { HttpError } from './errors.js';
import { createDenialAuditor, type DenialAuditOptions, type DenialAuditor } from './denial-audit.js';

export interface AuthContext {
  keyId: string;
  keyPrefix: string;
  /** Null for the operator's keys (`super_admin`, `operator_finance`). */
  tenantId: string | null;
  role: Role;
  scopes: string[] | null;
  /** When the caller's key expires: keys it creates expire no later. */
  expiresAt: Date | null;
}

declare module 'express-serve-static-core' {
  interface Request {
    auth?: AuthContext;
    /** The process's aggregating auditor of permission denials, set by `authenticate`. */
    denials?: DenialAuditor;
  }
}

const KEY_SHAPE = /^sk-[A-Za-z0-9_-]{20,200}$/;

function unauthorized(message: string): HttpError {
  return new HttpError('authentication_error', message, 'invalid_api_key');
}

/** Audit rows for failed authentication, per process: a burst, then this many a second. */
const AUTH_FAILURE_AUDIT_BURST = 20;
const AUTH_FAILURE_AUDIT_PER_SECOND = 5;

/**
 * Records failed authentications in the audit log (reason, route, and for a known key its ID and
 * prefix — never any part of a presented secret). A token bucket bounds the rows an anonymous
 * flood can write; the next row written says how many were suppressed before it.
 */
function createAuthFailureAuditor(db: Db) {
  let tokens = AUTH_FAILURE_AUDIT_BURST;
  let refilledAt = Date.now();
  let suppressed = 0;
  return async (req: Request, reason: string, key: { id: string; prefix: string; tenant_id: string | null } | null): Promise<void> => {
    const now = Date.now();
    tokens = Math.min(AUTH_FAILURE_AUDIT_BURST, tokens + ((now - refilledAt) / 1000) * AUTH_FAILURE_AUDIT_PER_SECOND);
    refilledAt = now;
    if (tokens < 1) {
      suppressed += 1;
      return;
    }
    tokens -= 1;
    const data = { reason, method: req.method, path: req.baseUrl + req.path, key_prefix: key?.prefix ?? null, suppressed_before: suppressed };
    suppressed = 0;
    await appendAudit(db, {
      actor: key ? `key:${key.id}` : 'anonymous', tenantId: key?.tenant_id ?? null, action: 'auth.failed',
      target: key ? `key:${key.id}` : null, data, idempotencyKey: null, at: new Date(now),
    }).catch(() => undefined);
  };
}

/**
 * Authenticates the bearer key; also hands the guards after it the process's denial auditor
 * (`denials`: options for tests, the defaults otherwise).
 */
export function authenticate(deps: { db: Db; denials?: DenialAuditOptions }): RequestHandler {
  const auditFailure = createAuthFailureAuditor(deps.db);
  const denials = createDenialAuditor((entries) => appendAuditMany(deps.db, entries), deps.denials);
  return async (req: Request, _res: Response, next: NextFunction) => {
    req.denials = denials;
    const fail = async (reason: string, message: string, key: Parameters<typeof auditFailure>[2] = null): Promise<never> => {
      await auditFailure(req, reason, key);
      throw unauthorized(message);
    };
    const header = req.get('authorization');
    if (!header) return fail('missing_key', "You didn't provide an API key. Send it as 'Authorization: Bearer sk-...'.");
    const match = /^Bearer (.+)$/i.exec(header.trim());
    const secret = match?.[1]?.trim() ?? '';
    if (!KEY_SHAPE.test(secret)) return fail('malformed_key', 'Incorrect API key provided.');
    const key = await findKeyBySecret(deps.db, secret);
    const now = new Date();
    if (!key) return fail('unknown_key', 'Incorrect API key provided.');
    if (key.revoked_at !== null) return fail('revoked_key', 'This API key has been revoked.', key);
    if (key.expires_at !== null && key.expires_at <= now) return fail('expired_key', 'This API key has expired.', key);
    if (key.tenant !== null && key.tenant.status !== 'active') {
      await auditFailure(req, 'tenant_suspended', key);
      throw new HttpError('permission_error', 'This tenant is suspended.', 'tenant_suspended');
    }
    req.auth = { keyId: key.id, keyPrefix: key.prefix, tenantId: key.tenant_id, role: key.role, scopes: key.scopes, expiresAt: key.expires_at };
    // last_used_at is kept to the minute: most requests need no write at all.
    if (key.last_used_at === null || now.getTime() - key.last_used_at.getTime() > 60_000) {
      void touchKey(deps.db, key.id, now).catch(() => undefined);
    }
    next();
  };
}

/** The authenticated caller; throws if the route forgot `authenticate`. */
export function authOf(req: Request): AuthContext {
  if (!req.auth) throw new HttpError('authentication_error', 'Not authenticated', 'invalid_api_key');
  return req.auth;
}

/**
 * Guards a route by permission; a denial is a 403 and is audited as `auth.denied`, aggregated
 * (`api/denial-audit.ts`): the first of a kind at once, repeats as one counted row per window.
 */
export function requirePermission(_deps: { db: Db }, permission: Permission): RequestHandler {
  return async (req, _res, next) => {
    const auth = authOf(req);
    if (allows(auth.role, auth.scopes, permission)) return next();
    await req.denials?.record({
      keyId: auth.keyId, tenantId: auth.tenantId, role: auth.role, permission, target: `${req.method} ${req.route?.path ?? req.path}`,
    });
    throw new HttpError('permission_error', `Your key's role (${auth.role}) does not allow this (${permission}).`, 'permission_denied');
  };
}

/** True for the operator's keys (`super_admin`, `operator_finance`): they have no tenant and see all. */
export function isOperator(auth: AuthContext): boolean {
  return auth.tenantId === null;
}

/**
 * The tenant a caller may act on: an operator key (within its permissions) any, everyone else
 * only their own. Another tenant's ID answers 404, as if it did not exist (no existence oracle).
 */
export function tenantScope(auth: AuthContext, tenantId: string, what = 'Tenant'): string {
  if (isOperator(auth) || auth.tenantId === tenantId) return tenantId;
  throw new HttpError('not_found_error', `${what} not found`, 'not_found');
}
