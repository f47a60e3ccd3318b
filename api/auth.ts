/**
 * Bearer-key authentication and permission guards. The key is checked for shape before any
 * database work (a malformed header is a fast 401 and never reaches SQL), then looked up by its
 * SHA-256 hash; revocation and expiry are read on every request, so they apply at once on every replica.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Db } from '../db/database.js';
import type { Role } from '../db/tables/index.js';
import { findKeyBySecret, touchKey } from '../db/repositories/keys.js';
import { appendAudit } from '../db/repositories/audit.js';
import { allows, type Permission } from '../activities/policy.js';
import { HttpError } from './errors.js';

export interface AuthContext {
  keyId: string;
  keyPrefix: string;
  tenantId: string | null;
  role: Role;
  scopes: string[] | null;
}

declare module 'express-serve-static-core' {
  interface Request {
    auth?: AuthContext;
  }
}

const KEY_SHAPE = /^sk-[A-Za-z0-9_-]{20,200}$/;

function unauthorized(message: string): HttpError {
  return new HttpError('authentication_error', message, 'invalid_api_key');
}

export function authenticate(deps: { db: Db }): RequestHandler {
  return async (req: Request, _res: Response, next: NextFunction) => {
    const header = req.get('authorization');
    if (!header) throw unauthorized("You didn't provide an API key. Send it as 'Authorization: Bearer sk-...'.");
    const match = /^Bearer (.+)$/i.exec(header.trim());
    const secret = match?.[1]?.trim() ?? '';
    if (!KEY_SHAPE.test(secret)) throw unauthorized('Incorrect API key provided.');
    const key = await findKeyBySecret(deps.db, secret);
    const now = new Date();
    if (!key) throw unauthorized('Incorrect API key provided.');
    if (key.revoked_at !== null) throw unauthorized('This API key has been revoked.');
    if (key.expires_at !== null && key.expires_at <= now) throw unauthorized('This API key has expired.');
    if (key.tenant !== null && key.tenant.status !== 'active') {
      throw new HttpError('permission_error', 'This tenant is suspended.', 'tenant_suspended');
    }
    req.auth = { keyId: key.id, keyPrefix: key.prefix, tenantId: key.tenant_id, role: key.role, scopes: key.scopes };
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

/** Guards a route by permission; a denial is a 403 and is audited. */
export function requirePermission(deps: { db: Db }, permission: Permission): RequestHandler {
  return async (req, _res, next) => {
    const auth = authOf(req);
    if (allows(auth.role, auth.scopes, permission)) return next();
    await appendAudit(deps.db, {
      actor: `key:${auth.keyId}`,
      tenantId: auth.tenantId,
      action: 'auth.denied',
      target: `${req.method} ${req.route?.path ?? req.path}`,
      data: { permission, role: auth.role },
      idempotencyKey: null,
      at: new Date(),
    });
    throw new HttpError('permission_error', `Your key's role (${auth.role}) does not allow this (${permission}).`, 'permission_denied');
  };
}

/**
 * The tenant a caller may act on: a super admin any, everyone else only their own. Another
 * tenant's ID answers 404, as if it did not exist (no existence oracle).
 */
export function tenantScope(auth: AuthContext, tenantId: string, what = 'Tenant'): string {
  if (auth.role === 'super_admin' || auth.tenantId === tenantId) return tenantId;
  throw new HttpError('not_found_error', `${what} not found`, 'not_found');
}
