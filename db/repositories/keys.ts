/** API keys: `sk-` + 32 random bytes (base64url); stored as SHA-256 hash and a visible prefix. */
import { createHash, randomBytes } from 'node:crypto';
import type { Db } from '../database.js';
import type { ApiKey, ModelKind, Role, Tenant } from '../tables/index.js';
import { newId } from '../../domain/ids.js';
import { preparedQuery } from '../prepared-query.js';

/** Length of the visible prefix kept with the hash (`sk-` + 8 characters). */
const PREFIX_LENGTH = 11;

export function hashKey(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export function generateKeySecret(): string {
  return `sk-${randomBytes(32).toString('base64url')}`;
}

export interface CreateKeyInput {
  tenantId: string | null;
  role: Role;
  name: string | null;
  scopes: string[] | null;
  expiresAt: Date | null;
  /** Use this secret instead of a generated one (the bootstrap admin key). */
  secret?: string;
}

/** Creates a key; the returned `secret` exists only here, never stored. */
export async function createKey(db: Db, input: CreateKeyInput): Promise<{ key: ApiKey; secret: string }> {
  const secret = input.secret ?? generateKeySecret();
  const key = await db
    .insertInto('api_keys')
    .values({
      id: newId('key'),
      tenant_id: input.tenantId,
      name: input.name,
      prefix: secret.slice(0, PREFIX_LENGTH),
      hash: hashKey(secret),
      role: input.role,
      scopes: input.scopes,
      expires_at: input.expiresAt,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return { key, secret };
}

export type KeyWithTenant = ApiKey & { tenant: Pick<Tenant, 'id' | 'status' | 'allowed_models'> | null };

/** Every column of `api_keys`, as the key lookup selects them (a column the table gains and this misses fails the type check below). */
const API_KEY_COLUMNS = ['id', 'tenant_id', 'name', 'prefix', 'hash', 'role', 'scopes', 'expires_at', 'revoked_at', 'last_used_at', 'created_at'] as const satisfies ReadonlyArray<keyof ApiKey>;
const EVERY_API_KEY_COLUMN: Exclude<keyof ApiKey, (typeof API_KEY_COLUMNS)[number]> extends never ? true : never = true;
void EVERY_API_KEY_COLUMN;

/**
 * The statement of {@link findKeyBySecret}, compiled once and named (every API request runs it):
 * its columns are named, so PostgreSQL parses it once per connection.
 */
const keyByHashQuery = preparedQuery({ hash: 'string' }, (db, { hash }) => db
  .selectFrom('api_keys as k')
  .leftJoin('tenants as t', 't.id', 'k.tenant_id')
  .select(API_KEY_COLUMNS.map((c) => `k.${c}` as const))
  .select(['t.status as tenant_status', 't.allowed_models as tenant_allowed_models'])
  .where('k.hash', '=', hash));

/** Finds a key by its secret's hash, with its tenant's status. Does not judge validity. */
export async function findKeyBySecret(db: Db, secret: string): Promise<KeyWithTenant | null> {
  const row = (await db.executeQuery(keyByHashQuery(db, { hash: hashKey(secret) }))).rows[0];
  if (!row) return null;
  const { tenant_status, tenant_allowed_models, ...key } = row;
  return {
    ...key,
    tenant: key.tenant_id === null || tenant_status === null
      ? null
      : { id: key.tenant_id, status: tenant_status, allowed_models: tenant_allowed_models },
  };
}

export async function getKey(db: Db, id: string): Promise<ApiKey | null> {
  return (await db.selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
}


export async function listKeys(db: Db, tenantId: string | null, limit: number, after: string | null): Promise<ApiKey[]> {
  let q = db.selectFrom('api_keys').selectAll();
  q = tenantId === null ? q.where('tenant_id', 'is', null) : q.where('tenant_id', '=', tenantId);
  if (after !== null) q = q.where('id', '>', after);
  return q.orderBy('id').limit(limit).execute();
}

export type RevokeResult = { ok: true; key: ApiKey } | { ok: false; reason: 'not_found' | 'last_super_admin' };

/**
 * Revokes a key at once; returns the row as it now is (revoking twice is a no-op). A super-admin
 * key is revoked only if another active, unscoped, never-expiring super-admin key remains, so the
 * operator is never locked out: the super-admin rows are locked meanwhile, so two concurrent
 * revokes cannot each leave the other as the last.
 */
export async function revokeKey(db: Db, id: string, at: Date): Promise<RevokeResult> {
  return db.transaction().execute(async (trx) => {
    const existing = await trx.selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirst();
    if (!existing) return { ok: false, reason: 'not_found' };
    if (existing.revoked_at !== null) return { ok: true, key: existing };
    if (existing.role === 'super_admin') {
      const admins = await trx.selectFrom('api_keys').select(['id', 'scopes', 'expires_at', 'revoked_at'])
        .where('role', '=', 'super_admin').where('revoked_at', 'is', null).orderBy('id').forUpdate().execute();
      const others = admins.filter((k) => k.id !== id && k.scopes === null && k.expires_at === null);
      if (others.length === 0) return { ok: false, reason: 'last_super_admin' };
    }
    const key = await trx.updateTable('api_keys').set({ revoked_at: at }).where('id', '=', id).where('revoked_at', 'is', null)
      .returningAll().executeTakeFirst();
    return { ok: true, key: key ?? existing };
  });
}

/**
 * Rotates a key in one transaction: a new key with the same tenant, role, scopes, name and expiry,
 * and the old one expiring after `graceSeconds` (never later than it already would). Null when the
 * key does not exist or is revoked or expired.
 */
export async function rotateKey(
  db: Db,
  id: string,
  graceSeconds: number,
  at: Date,
): Promise<{ old: ApiKey; before: ApiKey; key: ApiKey; secret: string } | null> {
  return db.transaction().execute(async (trx) => {
    const before = await trx.selectFrom('api_keys').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
    if (!before || before.revoked_at !== null || (before.expires_at !== null && before.expires_at <= at)) return null;
    const graceEnd = new Date(at.getTime() + graceSeconds * 1000);
    const old = await trx
      .updateTable('api_keys')
      .set({ expires_at: before.expires_at !== null && before.expires_at < graceEnd ? before.expires_at : graceEnd })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    const { key, secret } = await createKey(trx, {
      tenantId: before.tenant_id, role: before.role, name: before.name, scopes: before.scopes, expiresAt: before.expires_at,
    });
    return { old, before, key, secret };
  });
}

/** Marks a key used, at most once a minute per key so hot keys do not write on every request. */
export async function touchKey(db: Db, id: string, at: Date): Promise<void> {
  await db
    .updateTable('api_keys')
    .set({ last_used_at: at })
    .where('id', '=', id)
    .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', new Date(at.getTime() - 60_000))]))
    .execute();
}

export async function hasSuperAdminKey(db: Db): Promise<boolean> {
  const row = await db
    .selectFrom('api_keys')
    .select('id')
    .where('role', '=', 'super_admin')
    .where('revoked_at', 'is', null)
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

/** What the workflow's authorize step needs, in one round trip: the key, its tenant and the model. */
export interface AuthorizationFacts {
  key: Pick<ApiKey, 'id' | 'tenant_id' | 'role' | 'scopes' | 'revoked_at' | 'expires_at'>;
  tenant: Pick<Tenant, 'status' | 'allowed_models'> | null;
  model: { id: string; context_length: number; max_output_tokens: number; kind: ModelKind; accepts_dimensions: boolean } | null;
}

/** The query of {@link authorizationFacts}, to run alone or inside another statement (`admission-facts.ts`). */
export function authorizationFactsQuery(db: Db, keyId: string, model: string) {
  return db
    .selectFrom('api_keys as k')
    .leftJoin('tenants as t', 't.id', 'k.tenant_id')
    .leftJoin('models as m', (join) => join.on('m.id', '=', model))
    .select([
      'k.id', 'k.tenant_id', 'k.role', 'k.scopes', 'k.revoked_at', 'k.expires_at',
      't.status as tenant_status', 't.allowed_models as tenant_allowed_models',
      'm.id as model_id', 'm.context_length', 'm.max_output_tokens', 'm.kind', 'm.accepts_dimensions',
    ])
    .where('k.id', '=', keyId);
}

/** A row of {@link authorizationFactsQuery}. */
export type AuthorizationFactsRow = Awaited<ReturnType<ReturnType<typeof authorizationFactsQuery>['executeTakeFirstOrThrow']>>;

export function toAuthorizationFacts(row: AuthorizationFactsRow): AuthorizationFacts {
  return {
    key: { id: row.id, tenant_id: row.tenant_id, role: row.role, scopes: row.scopes, revoked_at: row.revoked_at, expires_at: row.expires_at },
    tenant: row.tenant_status === null ? null : { status: row.tenant_status, allowed_models: row.tenant_allowed_models },
    model: row.model_id === null || row.context_length === null || row.max_output_tokens === null || row.kind === null || row.accepts_dimensions === null
      ? null
      : { id: row.model_id, context_length: row.context_length, max_output_tokens: row.max_output_tokens, kind: row.kind, accepts_dimensions: row.accepts_dimensions },
  };
}

export async function authorizationFacts(db: Db, keyId: string, model: string): Promise<AuthorizationFacts | null> {
  const row = await authorizationFactsQuery(db, keyId, model).executeTakeFirst();
  return row ? toAuthorizationFacts(row) : null;
}
