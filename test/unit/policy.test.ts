/** Roles → permissions (DESIGN.md "Roles"), scopes that only narrow, model scopes, and who may grant which role. */
import { describe, expect, it } from 'vitest';
import { PERMISSIONS, ROLES, allows, allowsModel, canGrantRole, isRole, isValidScope, type Permission } from '../../activities/policy.js';
import type { Role } from '../../db/tables/index.js';

/** Expected table, written from DESIGN.md: role → permissions it has (everything else is denied). */
const EXPECTED: Record<Role, readonly Permission[]> = {
  super_admin: PERMISSIONS,
  tenant_admin: ['chat', 'batches', 'tenants:read', 'keys:read', 'keys:write', 'models:read', 'experiments:read', 'experiments:write', 'usage:read', 'audit:read', 'billing:read', 'webhooks:read', 'webhooks:write'],
  developer: ['chat', 'batches', 'models:read', 'usage:read'],
  analyst: ['models:read', 'usage:read', 'experiments:read'],
  finance: ['models:read', 'usage:read', 'billing:read', 'billing:write'],
  user: ['chat', 'models:read'],
};

describe('roles', () => {
  it('knows exactly the six roles', () => {
    expect([...ROLES].sort()).toEqual(['analyst', 'developer', 'finance', 'super_admin', 'tenant_admin', 'user']);
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
    expect(allows('finance', null, 'billing:write')).toBe(true);
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

describe('canGrantRole', () => {
  it('lets super_admin grant every role', () => {
    for (const r of ROLES) expect(canGrantRole('super_admin', r)).toBe(true);
  });

  it('lets tenant_admin grant every role but super_admin', () => {
    for (const r of ROLES) expect(canGrantRole('tenant_admin', r)).toBe(r !== 'super_admin');
  });

  it('lets no other role grant anything', () => {
    for (const granter of ['developer', 'analyst', 'finance', 'user'] as const) {
      for (const r of ROLES) expect(canGrantRole(granter, r), `${granter} → ${r}`).toBe(false);
    }
  });
});
