/**
 * Who may do what: roles (DESIGN.md "Roles") map to permissions; a key's optional scopes narrow
 * them further. Pure, shared by the API's route guards and the workflow's authorize step.
 */
import type { Role } from '../db/tables/index.js';

export const PERMISSIONS = [
  'chat', 'batches',
  'tenants:read', 'tenants:write', 'tenants:create', 'tenants:erase',
  'keys:read', 'keys:write',
  'models:read', 'models:write',
  'experiments:read', 'experiments:write',
  'usage:read', 'audit:read', 'audit:write',
  'billing:read', 'billing:write',
  'webhooks:read', 'webhooks:write',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

const ROLE_PERMISSIONS: Record<Role, readonly Permission[]> = {
  super_admin: PERMISSIONS,
  tenant_admin: [
    'chat', 'batches', 'tenants:read', 'keys:read', 'keys:write', 'models:read', 'experiments:read',
    'experiments:write', 'usage:read', 'audit:read', 'billing:read', 'webhooks:read', 'webhooks:write',
  ],
  developer: ['chat', 'batches', 'models:read', 'usage:read'],
  analyst: ['models:read', 'usage:read', 'experiments:read'],
  finance: ['models:read', 'usage:read', 'billing:read', 'billing:write'],
  user: ['chat', 'models:read'],
};

export const ROLES = Object.keys(ROLE_PERMISSIONS) as Role[];

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && Object.hasOwn(ROLE_PERMISSIONS, value);
}

/**
 * Scopes a key may carry: a permission name (only those permissions, within its role), or
 * `model:<id>` (only those models). A key without scopes has all its role's permissions and models.
 */
export function isValidScope(scope: string): boolean {
  return (PERMISSIONS as readonly string[]).includes(scope) || /^model:[A-Za-z0-9._:-]{1,128}$/.test(scope);
}

export function allows(role: Role, scopes: readonly string[] | null, permission: Permission): boolean {
  if (!ROLE_PERMISSIONS[role].includes(permission)) return false;
  if (scopes === null) return true;
  const permissionScopes = scopes.filter((s) => !s.startsWith('model:'));
  return permissionScopes.length === 0 || permissionScopes.includes(permission);
}

export function allowsModel(scopes: readonly string[] | null, model: string): boolean {
  if (scopes === null) return true;
  const modelScopes = scopes.filter((s) => s.startsWith('model:'));
  return modelScopes.length === 0 || modelScopes.includes(`model:${model}`);
}

/** The permissions a role may hand to keys it creates: never more than its own. */
export function canGrantRole(granter: Role, role: Role): boolean {
  if (granter === 'super_admin') return true;
  if (granter === 'tenant_admin') return role !== 'super_admin';
  return false;
}
