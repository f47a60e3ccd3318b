/** `sluice keys create|list|revoke|rotate`. */
import { intOpt, listOpt, PAGE_OPTIONS, pageOf, requiredStr, str, timeOpt, type CommandSpec, type Values } from './args.js';
import { formatTime, printList, type Out } from './format.js';
import { seg, type Handlers, type ListJson } from './http.js';

export interface KeyCreateBody {
  role: string;
  name?: string;
  scopes?: string[];
  expires_at?: string;
}

export type KeyAction =
  | { kind: 'keys.create'; tenantId: string; body: KeyCreateBody }
  | { kind: 'keys.create-operator'; body: KeyCreateBody }
  | { kind: 'keys.list'; tenantId: string; limit: number | null; after: string | null }
  | { kind: 'keys.revoke'; keyId: string }
  | { kind: 'keys.rotate'; keyId: string; graceSeconds: number | undefined };

const KEY_OPTIONS = {
  name: { type: 'string', arg: 'N', help: 'a label for the key' },
  scopes: { type: 'string', arg: 'a,b', help: 'narrower permissions and model:<id> entries (default: all of the role)' },
  'expires-at': { type: 'string', arg: 'ISO', help: 'expiry time, ISO 8601 (default: never; required to be no later than your own key\'s)' },
} as const;

/** The body of a key to create, from the options `KEY_OPTIONS` and `--role`. */
function keyBody(v: Values): KeyCreateBody {
  const body: KeyCreateBody = { role: requiredStr(v, 'role') };
  const name = str(v, 'name');
  if (name !== undefined) body.name = name;
  const scopes = listOpt(v, 'scopes');
  if (scopes !== undefined) body.scopes = scopes;
  const expiresAt = timeOpt(v, 'expires-at');
  if (expiresAt !== undefined) body.expires_at = expiresAt;
  return body;
}

export const keyCommands: readonly CommandSpec<KeyAction>[] = [
  {
    path: ['keys', 'create'],
    synopsis: 'TENANT_ID --role R [--name N] [--scopes a,b] [--expires-at ISO]',
    summary: 'create an API key; its secret is printed once',
    options: { role: { type: 'string', arg: 'R', help: 'tenant_admin, developer, analyst, finance or user (required)' }, ...KEY_OPTIONS },
    args: ['TENANT_ID'],
    build: (v, [tenantId]) => ({ kind: 'keys.create', tenantId: tenantId as string, body: keyBody(v) }),
  },
  {
    path: ['keys', 'create-operator'],
    synopsis: '--role R [--name N] [--scopes a,b] [--expires-at ISO]',
    summary: "create a key of the operator (no tenant); its secret is printed once (super admin only)",
    options: { role: { type: 'string', arg: 'R', help: 'super_admin or operator_finance (required)' }, ...KEY_OPTIONS },
    args: [],
    build: (v) => ({ kind: 'keys.create-operator', body: keyBody(v) }),
  },
  {
    path: ['keys', 'list'],
    synopsis: 'TENANT_ID [--limit N] [--after ID]',
    summary: "list a tenant's keys (never their secrets)",
    options: PAGE_OPTIONS,
    args: ['TENANT_ID'],
    build: (v, [tenantId]) => ({ kind: 'keys.list', tenantId: tenantId as string, ...pageOf(v) }),
  },
  {
    path: ['keys', 'revoke'],
    synopsis: 'KEY_ID',
    summary: 'revoke a key (effective immediately)',
    options: {},
    args: ['KEY_ID'],
    build: (_v, [keyId]) => ({ kind: 'keys.revoke', keyId: keyId as string }),
  },
  {
    path: ['keys', 'rotate'],
    synopsis: 'KEY_ID [--grace-seconds N]',
    summary: 'issue a new key with the same role and scopes; the old one keeps working for the grace period (default 3600 s)',
    options: { 'grace-seconds': { type: 'string', arg: 'N', help: 'how long the old key stays valid (0 to 604800)' } },
    args: ['KEY_ID'],
    build: (v, [keyId]) => ({ kind: 'keys.rotate', keyId: keyId as string, graceSeconds: intOpt(v, 'grace-seconds', 0) }),
  },
];

interface KeyJson {
  id: string;
  tenant_id: string;
  name: string | null;
  prefix: string;
  role: string;
  scopes: string[] | null;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
  created_at: number;
  /** Only in the create and rotate responses. */
  key?: string;
}

function keyStatus(k: KeyJson): string {
  if (k.revoked_at !== null) return 'revoked';
  if (k.expires_at !== null && k.expires_at * 1000 <= Date.now()) return 'expired';
  return 'active';
}

function printSecret(k: KeyJson, out: Out): void {
  out('');
  out(`    ${k.key ?? '(the API returned no secret)'}`);
  out('');
  out('This secret is shown only once and cannot be recovered: store it now.');
}

export const keyHandlers: Handlers<KeyAction> = {
  'keys.create': {
    request: (a) => ({ method: 'POST', path: `/v1/admin/tenants/${seg(a.tenantId)}/keys`, body: a.body }),
    render(body, _a, { out }) {
      const k = body as KeyJson;
      out(`Created key ${k.id} for tenant ${k.tenant_id}: role ${k.role}, scopes ${k.scopes === null ? 'all of the role' : k.scopes.join(',')}, expires ${k.expires_at === null ? 'never' : formatTime(k.expires_at)}.`);
      printSecret(k, out);
    },
  },
  'keys.create-operator': {
    request: (a) => ({ method: 'POST', path: '/v1/admin/keys', body: a.body }),
    render(body, _a, { out }) {
      const k = body as KeyJson;
      out(`Created operator key ${k.id}: role ${k.role}, scopes ${k.scopes === null ? 'all of the role' : k.scopes.join(',')}, expires ${k.expires_at === null ? 'never' : formatTime(k.expires_at)}.`);
      printSecret(k, out);
    },
  },
  'keys.list': {
    request: (a) => ({ method: 'GET', path: `/v1/admin/tenants/${seg(a.tenantId)}/keys`, query: { limit: a.limit, after: a.after } }),
    render(body, _a, { out }) {
      const list = body as ListJson<KeyJson>;
      printList(list.data, out, 'No keys.', ['ID', 'NAME', 'PREFIX', 'ROLE', 'SCOPES', 'STATUS', 'EXPIRES', 'LAST USED', 'CREATED'], (k) => [
        k.id, k.name ?? '-', k.prefix, k.role, k.scopes === null ? 'all' : k.scopes.join(','), keyStatus(k),
        k.expires_at === null ? 'never' : formatTime(k.expires_at),
        k.last_used_at === null ? 'never' : formatTime(k.last_used_at),
        formatTime(k.created_at),
      ]);
      const last = list.data.at(-1);
      if (list.has_more && last) out(`More keys: --after ${last.id}`);
    },
  },
  'keys.revoke': {
    request: (a) => ({ method: 'POST', path: `/v1/admin/keys/${seg(a.keyId)}/revoke` }),
    render(body, _a, { out }) {
      const k = body as KeyJson;
      out(`Revoked key ${k.id} (${k.prefix}…, tenant ${k.tenant_id}) at ${k.revoked_at === null ? '?' : formatTime(k.revoked_at)}.`);
    },
  },
  'keys.rotate': {
    request: (a) => ({
      method: 'POST', path: `/v1/admin/keys/${seg(a.keyId)}/rotate`, body: a.graceSeconds === undefined ? {} : { grace_seconds: a.graceSeconds },
    }),
    render(body, a, { out }) {
      const k = body as KeyJson & { rotated_from?: { id: string; expires_at: number | null } };
      out(`Rotated key ${a.keyId}: new key ${k.id} (role ${k.role}); the old key expires ${k.rotated_from?.expires_at == null ? '?' : formatTime(k.rotated_from.expires_at)}.`);
      printSecret(k, out);
    },
  },
};
