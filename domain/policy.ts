/**
 * Who may do what: roles (DESIGN.md "Roles") map to permissions; a key's optional scopes narrow
 * them further. Pure, shared by the API's route guards and the workflow's authorize step.
 *
 * Two families of roles: operator roles (`super_admin`, `operator_finance`) exist only on keys of
 * the operator (no tenant); tenant roles (`tenant_admin`, `developer`, `analyst`, `finance`, `user`)
 * only on keys of a tenant. Only operator roles hold `billing:write`, so no key of a tenant can
 * change what that tenant owes.
 */
/** A key's role: operator roles (no tenant) and tenant roles (see `OPERATOR_ROLES`). */
export type Role = 'super_admin' | 'operator_finance' | 'tenant_admin' | 'developer' | 'analyst' | 'finance' | 'user';

export const PERMISSIONS = [
  'chat', 'batches',
  'tenants:read', 'tenants:write', 'tenants:create', 'tenants:erase',
  'keys:read', 'keys:write',
  'models:read', 'models:write',
  'experiments:read', 'experiments:write',
  'usage:read', 'audit:read', 'audit:write',
  'billing:read', 'billing:write',
  'webhooks:read', 'webhooks:write',
    'experiments:write', 'usage:read', 'audit:read', 'billing:read', 'webhooks:read', 'webhooks:write', 'feedback:write',
    // Drops its own tenant's response cache (the next requests are generated and billed in full).
    'cache:write',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

const ROLE_PERMISSIONS: Record<Role, readonly Permission[]> = {
  super_admin: PERMISSIONS,
  // Billing runs, adjustments, void/re-issue, prices and plan rates, for every tenant; reads what it needs for them.
  operator_finance: ['tenants:read', 'models:read', 'usage:read', 'billing:read', 'billing:write'],
  tenant_admin: [
    'chat', 'batches', 'tenants:read', 'keys:read', 'keys:write', 'models:read', 'experiments:read',
    'experiments:write', 'usage:read', 'audit:read', 'billing:read', 'webhooks:read', 'webhooks:write', 'feedback:write',
    // Drops its own tenant's response cache (the next requests are generated and billed in full).
    'cache:write',
  ],
  // `feedback:write`: feedback on any completion of the tenant (the key that made a request may always send it).
  developer: ['chat', 'batches', 'models:read', 'usage:read', 'feedback:write'],
  analyst: ['models:read', 'usage:read', 'experiments:read'],
  // Tenant finance reads its usage and invoices; it writes nothing that changes the bill.
  finance: ['models:read', 'usage:read', 'billing:read'],
  user: ['chat', 'models:read'],
};

export const ROLES = Object.keys(ROLE_PERMISSIONS) as Role[];

/** Roles that only keys of the operator (no tenant) carry. */
export const OPERATOR_ROLES: readonly Role[] = ['super_admin', 'operator_finance'];
/** Roles that only keys of a tenant carry. */
export const TENANT_ROLES: readonly Role[] = ROLES.filter((r) => !OPERATOR_ROLES.includes(r));

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && Object.hasOwn(ROLE_PERMISSIONS, value);
}

/** True for the operator's roles (`super_admin`, `operator_finance`): keys without a tenant. */
export function isOperatorRole(role: Role): boolean {
  return OPERATOR_ROLES.includes(role);
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

/** The permissions a key of this role and these scopes actually has. */
export function effectivePermissions(role: Role, scopes: readonly string[] | null): Permission[] {
  return PERMISSIONS.filter((p) => allows(role, scopes, p));
}

/**
 * Which roles a role may hand to keys it creates: a super admin any role, a tenant admin the
 * tenant roles (never an operator role). Whether the new key's permissions fit the creator's is
 * `keyGrantProblem`'s question.
 */
export function canGrantRole(granter: Role, role: Role): boolean {
  if (granter === 'super_admin') return true;
  if (granter === 'tenant_admin') return !isOperatorRole(role);
  return false;
}

/** The key that creates (or rotates) another: what it is. */
export interface GrantingKey {
  role: Role;
  scopes: readonly string[] | null;
  expiresAt: Date | null;
}

/** The key to be created: what it would be. */
export interface GrantedKey {
  role: Role;
  scopes: readonly string[] | null;
  expiresAt: Date | null;
}

/** Why a key may not be created by another: the field at fault and a stable code. */
export interface GrantProblem {
  param: 'role' | 'scopes' | 'expires_at';
  code: 'role_not_grantable' | 'scope_not_in_role' | 'scope_exceeds_creator' | 'unscoped_exceeds_creator' | 'expiry_exceeds_creator';
  message: string;
}

/**
 * Null when `granter` may create `key`; else the first reason it may not. A key is never wider
 * or longer-lived than its creator:
 * - role: grantable by the creator's role (`canGrantRole`), and every permission the new key would
 *   have (its role narrowed by its scopes) is one the creator has;
 * - scopes: each permission scope is one of the new key's role (a scope outside the role would be
 *   silently void: refused instead); a creator with permission scopes only creates keys with
 *   permission scopes (an unscoped child is refused), and one with model scopes only keys whose
 *   model scopes are a subset of its own;
 * - expiry: a creator that expires only creates keys that expire no later (never-expiring refused).
 */
export function keyGrantProblem(granter: GrantingKey, key: GrantedKey): GrantProblem | null {
  if (!canGrantRole(granter.role, key.role)) {
    return { param: 'role', code: 'role_not_grantable', message: `A ${granter.role} key may not create ${key.role} keys` };
  }
  const scopes = key.scopes ?? [];
  const permissionScopes = scopes.filter((s) => !s.startsWith('model:'));
  const outside = permissionScopes.find((s) => !ROLE_PERMISSIONS[key.role].includes(s as Permission));
  if (outside !== undefined) {
    return { param: 'scopes', code: 'scope_not_in_role', message: `Scope '${outside}' is not a permission of the ${key.role} role` };
  }
  const granterScopes = granter.scopes ?? [];
  const granterPermissionScoped = granterScopes.some((s) => !s.startsWith('model:'));
  const granterModels = granterScopes.filter((s) => s.startsWith('model:'));
  if (granterPermissionScoped && permissionScopes.length === 0) {
    return { param: 'scopes', code: 'unscoped_exceeds_creator', message: 'Your key is scoped: the new key needs permission scopes within yours' };
  }
  const mine = new Set(effectivePermissions(granter.role, granter.scopes));
  const wider = effectivePermissions(key.role, key.scopes).find((p) => !mine.has(p));
  if (wider !== undefined) {
    return { param: key.scopes === null || permissionScopes.length === 0 ? 'role' : 'scopes', code: 'scope_exceeds_creator', message: `The new key would have '${wider}', which your key does not have` };
  }
  if (granterModels.length > 0) {
    const models = scopes.filter((s) => s.startsWith('model:'));
    if (models.length === 0) {
      return { param: 'scopes', code: 'unscoped_exceeds_creator', message: 'Your key is limited to some models: the new key needs model scopes within yours' };
    }
    const extra = models.find((m) => !granterModels.includes(m));
    if (extra !== undefined) return { param: 'scopes', code: 'scope_exceeds_creator', message: `Scope '${extra}' is outside your key's models` };
  }
  if (granter.expiresAt !== null && (key.expiresAt === null || key.expiresAt.getTime() > granter.expiresAt.getTime())) {
    return {
      param: 'expires_at', code: 'expiry_exceeds_creator',
      message: `Your key expires at ${granter.expiresAt.toISOString()}: the new key must expire no later`,
    };
  }
  return null;
}
