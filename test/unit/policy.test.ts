/** Roles → permissions (DESIGN.md "Roles"), scopes that only narrow, model scopes, and who may grant which role. */
import { describe, expect, it } from 'vitest';
import {
  OPERATOR_ROLES, PERMISSIONS, ROLES, TENANT_ROLES, allows, allowsModel, canGrantRole, isRole, isValidScope, keyGrantProblem, type Permission,
} from '../../domain/policy.js';
import type { Role } from '../../db/tables/index.js';

/** Expected table, written from DESIGN.md: role → permissions it has (everything else is denied). */
const EXPECTED: Record<Role, readonly Permission[]> = {
  super_admin: PERMISSIONS,
  operator_finance: ['tenants:read', 'models:read', 'usage:read', 'billing:read', 'billing:write'],
  tenant_admin: ['chat', 'batches', 'tenants:read', 'keys:read', 'keys:write', 'models:read', 'experiments:read', 'experiments:write', 'usage:read', 'audit:read', 'billing:read', 'webhooks:read', 'webhooks:write', 'feedback:write', 'cache:write'],
  developer: ['chat', 'batches', 'models:read', 'usage:read', 'feedback:write'],
  analyst: ['models:read', 'usage:read', 'experiments:read'],
  finance: ['models:read', 'usage:read', 'billing:read'],
  user: ['chat', 'models:read'],
};

describe('roles', () => {
  it('knows exactly the seven roles: two of the operator, five of tenants', () => {
    expect([...ROLES].sort()).toEqual(['analyst', 'developer', 'finance', 'operator_finance', 'super_admin', 'tenant_admin', 'user']);
    expect([...OPERATOR_ROLES].sort()).toEqual(['operator_finance', 'super_admin']);
    expect([...TENANT_ROLES].sort()).toEqual(['analyst', 'developer', 'finance', 'tenant_admin', 'user']);
    for (const r of ROLES) expect(isRole(r)).toBe(true);
    for (const v of ['admin', 'Super_Admin', '', 'toString', '__proto__', 42, null, undefined]) expect(isRole(v)).toBe(false);
  });

  it.each(ROLES.flatMap((role) => PERMISSIONS.map((p) => [role, p] as const)))('%s: %s follows the role table', (role, permission) => {
    expect(allows(role, null, permission)).toBe(EXPECTED[role].includes(permission));
  });

  it('spot checks', () => {
    expect(allows('user', null, 'chat')).toBe(true);
    expect(allows('user', null, 'usage:read')).toBe(false);
    expect(allows('user', null, 'batches')).toBe(false);
    expect(allows('finance', null, 'billing:write')).toBe(false);
    expect(allows('finance', null, 'billing:read')).toBe(true);
    expect(allows('operator_finance', null, 'billing:write')).toBe(true);
    expect(allows('operator_finance', null, 'keys:write')).toBe(false);
    expect(allows('finance', null, 'chat')).toBe(false);
    expect(allows('analyst', null, 'chat')).toBe(false);
    expect(allows('analyst', null, 'experiments:write')).toBe(false);
    expect(allows('developer', null, 'keys:write')).toBe(false);
    expect(allows('tenant_admin', null, 'tenants:create')).toBe(false);
    expect(allows('tenant_admin', null, 'billing:write')).toBe(false);
    for (const p of PERMISSIONS) expect(allows('super_admin', null, p)).toBe(true);
  });
});

describe('scopes', () => {
  it('an empty scope list, or one with only model scopes, leaves the role’s permissions', () => {
    for (const p of PERMISSIONS) {
      expect(allows('developer', [], p)).toBe(allows('developer', null, p));
      expect(allows('developer', ['model:tiny'], p)).toBe(allows('developer', null, p));
    }
  });

  it('permission scopes narrow the role to those permissions', () => {
    expect(allows('developer', ['chat'], 'chat')).toBe(true);
    expect(allows('developer', ['chat'], 'batches')).toBe(false);
    expect(allows('developer', ['chat'], 'usage:read')).toBe(false);
    expect(allows('developer', ['chat', 'model:tiny'], 'chat')).toBe(true);
    expect(allows('developer', ['chat', 'model:tiny'], 'models:read')).toBe(false);
    expect(allows('super_admin', ['usage:read'], 'tenants:create')).toBe(false);
  });

  it('scopes never widen a role', () => {
    expect(allows('user', ['usage:read'], 'usage:read')).toBe(false);
    expect(allows('finance', ['chat'], 'chat')).toBe(false);
    expect(allows('analyst', ['chat', 'billing:write'], 'billing:write')).toBe(false);
  });

  it('model scopes narrow the models', () => {
    expect(allowsModel(null, 'anything')).toBe(true);
    expect(allowsModel([], 'anything')).toBe(true);
    expect(allowsModel(['chat'], 'anything')).toBe(true);
    expect(allowsModel(['model:x'], 'x')).toBe(true);
    expect(allowsModel(['model:x'], 'y')).toBe(false);
    expect(allowsModel(['model:x', 'model:y', 'chat'], 'y')).toBe(true);
    // Exact match only: no prefixes or substrings.
    expect(allowsModel(['model:x'], 'x2')).toBe(false);
    expect(allowsModel(['model:x2'], 'x')).toBe(false);
  });

  it('validates scopes', () => {
    for (const p of PERMISSIONS) expect(isValidScope(p)).toBe(true);
    for (const s of ['model:tiny', 'model:qwen2.5-0.5b:q4_k_m', `model:${'m'.repeat(128)}`]) expect(isValidScope(s)).toBe(true);
    for (const s of ['admin', 'model:', 'model:bad name', `model:${'m'.repeat(129)}`, 'Chat', 'chat ', 'billing:*', '']) {
      expect(isValidScope(s), s).toBe(false);
    }
  });
});

describe('no tenant key can change what its tenant owes', () => {
  it('no tenant role, whatever its scopes, has billing:write', () => {
    for (const r of TENANT_ROLES) expect(allows(r, null, 'billing:write'), r).toBe(false);
    for (const r of TENANT_ROLES) expect(allows(r, ['billing:write'], 'billing:write'), r).toBe(false);
  });
});

describe('canGrantRole', () => {
  it('lets super_admin grant every role', () => {
    for (const r of ROLES) expect(canGrantRole('super_admin', r)).toBe(true);
  });

  it('lets tenant_admin grant the tenant roles only, never an operator role', () => {
    for (const r of ROLES) expect(canGrantRole('tenant_admin', r)).toBe(TENANT_ROLES.includes(r));
  });

  it('lets no other role grant anything', () => {
    for (const granter of ['operator_finance', 'developer', 'analyst', 'finance', 'user'] as const) {
      for (const r of ROLES) expect(canGrantRole(granter, r), `${granter} → ${r}`).toBe(false);
    }
  });
});

describe('keyGrantProblem: a key never creates a wider or longer-lived key', () => {
  const inHour = new Date(Date.now() + 3_600_000);
  const inDay = new Date(Date.now() + 86_400_000);
  const admin = { role: 'tenant_admin' as const, scopes: null, expiresAt: null };

  it('an unscoped, never-expiring tenant admin may create any tenant key, and no operator key', () => {
    for (const role of TENANT_ROLES) expect(keyGrantProblem(admin, { role, scopes: null, expiresAt: null }), role).toBeNull();
    for (const role of OPERATOR_ROLES) expect(keyGrantProblem(admin, { role, scopes: null, expiresAt: null })).toMatchObject({ param: 'role', code: 'role_not_grantable' });
  });

  it('a creator scoped to keys:write cannot mint an unscoped key, or one with permissions it lacks', () => {
    const scoped = { role: 'tenant_admin' as const, scopes: ['keys:write'], expiresAt: null };
    expect(keyGrantProblem(scoped, { role: 'developer', scopes: null, expiresAt: null })).toMatchObject({ param: 'scopes', code: 'unscoped_exceeds_creator' });
    expect(keyGrantProblem(scoped, { role: 'developer', scopes: ['chat'], expiresAt: null })).toMatchObject({ param: 'scopes', code: 'scope_exceeds_creator' });
    expect(keyGrantProblem(scoped, { role: 'tenant_admin', scopes: ['keys:write'], expiresAt: null })).toBeNull();
    const chatter = { role: 'tenant_admin' as const, scopes: ['keys:write', 'chat'], expiresAt: null };
    expect(keyGrantProblem(chatter, { role: 'user', scopes: ['chat'], expiresAt: null })).toBeNull();
    // user also has models:read, which the creator lacks: unscoped it would be wider.
    expect(keyGrantProblem(chatter, { role: 'user', scopes: null, expiresAt: null })).toMatchObject({ code: 'unscoped_exceeds_creator' });
  });

  it('a scope outside the new key\'s role is refused, not silently void', () => {
    expect(keyGrantProblem(admin, { role: 'user', scopes: ['usage:read'], expiresAt: null })).toMatchObject({ param: 'scopes', code: 'scope_not_in_role' });
  });

  it('model scopes only narrow', () => {
    const tiny = { role: 'tenant_admin' as const, scopes: ['model:tiny'], expiresAt: null };
    expect(keyGrantProblem(tiny, { role: 'developer', scopes: null, expiresAt: null })).toMatchObject({ param: 'scopes', code: 'unscoped_exceeds_creator' });
    expect(keyGrantProblem(tiny, { role: 'developer', scopes: ['model:big'], expiresAt: null })).toMatchObject({ param: 'scopes', code: 'scope_exceeds_creator' });
    expect(keyGrantProblem(tiny, { role: 'developer', scopes: ['model:tiny'], expiresAt: null })).toBeNull();
    expect(keyGrantProblem(tiny, { role: 'developer', scopes: ['chat', 'model:tiny'], expiresAt: null })).toBeNull();
  });

  it('an expiring creator only creates keys that expire no later', () => {
    const brief = { role: 'tenant_admin' as const, scopes: null, expiresAt: inHour };
    expect(keyGrantProblem(brief, { role: 'developer', scopes: null, expiresAt: null })).toMatchObject({ param: 'expires_at', code: 'expiry_exceeds_creator' });
    expect(keyGrantProblem(brief, { role: 'developer', scopes: null, expiresAt: inDay })).toMatchObject({ param: 'expires_at', code: 'expiry_exceeds_creator' });
    expect(keyGrantProblem(brief, { role: 'developer', scopes: null, expiresAt: inHour })).toBeNull();
    expect(keyGrantProblem(brief, { role: 'developer', scopes: null, expiresAt: new Date(inHour.getTime() - 1000) })).toBeNull();
  });

  it('a scoped super admin is bounded the same way', () => {
    const narrow = { role: 'super_admin' as const, scopes: ['keys:write', 'billing:read', 'billing:write'], expiresAt: null };
    expect(keyGrantProblem(narrow, { role: 'super_admin', scopes: null, expiresAt: null })).toMatchObject({ code: 'unscoped_exceeds_creator' });
    expect(keyGrantProblem(narrow, { role: 'operator_finance', scopes: ['billing:write'], expiresAt: null })).toBeNull();
    expect(keyGrantProblem(narrow, { role: 'operator_finance', scopes: ['usage:read'], expiresAt: null })).toMatchObject({ code: 'scope_exceeds_creator' });
  });
});
