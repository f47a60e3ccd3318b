/**
 * The `sluice` CLI: `parseCommand` (flags, env, usage errors) as a pure function, and `runCommand`
 * against a small HTTP server on 127.0.0.1 that records each request and answers with canned,
 * API-shaped JSON. That server stands in for the Sluice API only here; the CLI talks to it through
 * the real `fetch`. The last test runs the `bin` shim as a child process.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { USAGE_GROUPS as API_USAGE_GROUPS } from '../../db/repositories/usage.js';
import { cli, formatMicros, parseCommand, runCommand, type Command } from '../../scripts/sluice.js';
import { startApiDouble, type ApiDouble, type Canned, type Recorded } from '../support/api-double.js';

const KEY = 'sk-test_0123456789abcdefghijklmn';

let api: ApiDouble;
let baseUrl: string;
let recorded: Recorded[];
let routes: Map<string, Canned>;

beforeAll(async () => {
  api = await startApiDouble((method, path) => ({
    status: 404,
    body: { error: { message: `Unknown route ${method} ${path}`, type: 'not_found_error', param: null, code: 'unknown_url' } },
  }));
  ({ url: baseUrl, recorded, routes } = api);
});

afterAll(async () => {
  await api.close();
});

beforeEach(() => {
  api.reset();
});

/** Runs the CLI like the bin does, with the env pointing at the test server. */
async function run(argv: string[], env: Record<string, string | undefined> = { SLUICE_URL: baseUrl, SLUICE_API_KEY: KEY }) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await cli(argv, env, { fetch: globalThis.fetch, out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

function only(): Recorded {
  expect(recorded).toHaveLength(1);
  return recorded[0] as Recorded;
}

const tenant = {
  id: 'ten_1',
  object: 'tenant',
  name: 'Acme',
  plan: 'pro',
  status: 'active',
  limits: { requests_per_minute: 60, tokens_per_minute: null, max_concurrent: 4, monthly_budget_micros: 10_000_000, allowed_models: ['tiny', 'big'] },
  created_at: 1_735_689_600,
};

const key = {
  id: 'key_1',
  object: 'api_key',
  tenant_id: 'ten_1',
  name: 'ci',
  prefix: 'sk-abcd',
  role: 'developer',
  scopes: ['chat', 'model:tiny'],
  expires_at: null,
  revoked_at: null,
  last_used_at: null,
  created_at: 1_735_689_600,
};

const model = {
  id: 'tiny',
  object: 'model',
  owned_by: 'sluice',
  created: 1_735_689_600,
  context_length: 4096,
  max_output_tokens: 512,
  deployments: [
    {
      id: 'tiny-local-0', pool: 'local', provider: 'llama-cpp', gguf_path: 'tiny.gguf', base_url: null, api_key_ref: null, upstream_model: null,
      weight: 1, priority: 0, status: 'active',
      price: { input_micros_per_mtok: 150_000, output_micros_per_mtok: 600_000, effective_from: '2025-01-01T00:00:00.000Z' },
    },
  ],
};

describe('parseCommand', () => {
  const env = { SLUICE_URL: 'http://api.example:9000', SLUICE_API_KEY: KEY };

  function parsed(argv: string[], e: Record<string, string | undefined> = env): Command {
    const r = parseCommand(argv, e);
    if (!r.ok) throw new Error(`unexpected usage error: ${r.error}`);
    return r.command;
  }

  function usageError(argv: string[], e: Record<string, string | undefined> = env): string {
    const r = parseCommand(argv, e);
    if (r.ok) throw new Error(`expected a usage error for ${argv.join(' ')}`);
    expect(r.help).toMatch(/^Usage: sluice/);
    return r.error;
  }

  it('turns tenants create flags into the API body, with the connection from env', () => {
    expect(
      parsed(['tenants', 'create', '--name', 'Acme', '--plan', 'pro', '--rpm', '60', '--tpm', '1000', '--max-concurrent', '4', '--budget-micros', '10000000', '--allowed-models', 'tiny, big']),
    ).toEqual({
      kind: 'api',
      conn: { url: 'http://api.example:9000', key: KEY },
      json: false,
      action: {
        kind: 'tenants.create',
        body: {
          name: 'Acme',
          plan: 'pro',
          limits: { requests_per_minute: 60, tokens_per_minute: 1000, max_concurrent: 4, monthly_budget_micros: 10_000_000, allowed_models: ['tiny', 'big'] },
        },
      },
    });
    // No limit flags: no limits object at all (the API's default is unlimited).
    expect((parsed(['tenants', 'create', '--name', 'Solo']) as { action: { body: object } }).action.body).toEqual({ name: 'Solo' });
  });

  it('lets flags win over env, defaults the URL, strips /v1 and takes global flags anywhere', () => {
    const cmd = parsed(['--url', 'https://sluice.example/v1/', 'models', 'list', '--json', '--key', 'sk-flag_key_0123456789abcdef']);
    expect(cmd).toEqual({ kind: 'api', conn: { url: 'https://sluice.example', key: 'sk-flag_key_0123456789abcdef' }, json: true, action: { kind: 'models.list' } });
    expect(parsed(['audit', 'verify'], { SLUICE_API_KEY: KEY })).toMatchObject({ conn: { url: 'http://localhost:8080' } });
  });

  it('parses tenants update: partial limits, unlimited and all models as null, status', () => {
    expect(parsed(['tenants', 'update', 'ten_1', '--rpm', 'unlimited', '--allowed-models', '*', '--status', 'suspended'])).toMatchObject({
      action: { kind: 'tenants.update', id: 'ten_1', body: { status: 'suspended', limits: { requests_per_minute: null, allowed_models: null } } },
    });
    expect(usageError(['tenants', 'update', 'ten_1'])).toMatch(/nothing to update/);
    expect(usageError(['tenants', 'update', 'ten_1', '--status', 'paused'])).toMatch(/--status must be active or suspended/);
  });

  it('parses keys, models, usage, audit and chat commands', () => {
    expect(parsed(['keys', 'create', 'ten_1', '--role', 'developer', '--name', 'ci', '--scopes', 'chat,model:tiny', '--expires-at', '2030-01-01T00:00:00Z'])).toMatchObject({
      action: { kind: 'keys.create', tenantId: 'ten_1', body: { role: 'developer', name: 'ci', scopes: ['chat', 'model:tiny'], expires_at: '2030-01-01T00:00:00Z' } },
    });
    expect(parsed(['keys', 'list', 'ten_1', '--limit', '5'])).toMatchObject({ action: { kind: 'keys.list', tenantId: 'ten_1', limit: 5, after: null } });
    expect(parsed(['keys', 'revoke', 'key_1'])).toMatchObject({ action: { kind: 'keys.revoke', keyId: 'key_1' } });
    expect(parsed(['models', 'add', 'tiny', '--gguf', 'tiny.gguf', '--pool', 'gpu', '--context', '4096', '--max-output', '512', '--input-price', '150000', '--output-price', '600000'])).toMatchObject({
      action: {
        kind: 'models.add',
        body: {
          id: 'tiny', context_length: 4096, max_output_tokens: 512,
          deployments: [{ provider: 'llama-cpp', gguf_path: 'tiny.gguf', pool: 'gpu', price: { input_micros_per_mtok: 150_000, output_micros_per_mtok: 600_000 } }],
        },
      },
    });
    expect(parsed(['models', 'add', 'gpt', '--base-url', 'https://up.example/v1', '--upstream-model', 'gpt-4o-mini', '--api-key-ref', 'OPENAI'])).toMatchObject({
      action: { body: { id: 'gpt', deployments: [{ provider: 'openai-compatible', base_url: 'https://up.example/v1', upstream_model: 'gpt-4o-mini', api_key_ref: 'OPENAI' }] } },
    });
    expect(parsed(['usage', '--from', '2025-01-01', '--to', '1738368000', '--group-by', 'day', '--tenant', 'ten_1'])).toMatchObject({
      action: { kind: 'usage', query: { from: '2025-01-01', to: '1738368000', group_by: 'day', tenant_id: 'ten_1' } },
    });
    expect(parsed(['audit', 'list', '--limit', '5'])).toMatchObject({ action: { kind: 'audit.list', limit: 5, before: null } });
    expect(parsed(['billing', 'close-day', '--day', '2025-04-17', '--no-wait'])).toMatchObject({ action: { kind: 'billing.closeDay', day: '2025-04-17', tenantId: null, wait: false } });
    expect(parsed(['chat', '--model', 'tiny', 'say', 'hi', '--max-tokens', '8'])).toMatchObject({
      action: { kind: 'chat', body: { model: 'tiny', messages: [{ role: 'user', content: 'say hi' }], max_tokens: 8 } },
    });
    expect(parsed(['chat', '--model', 'tiny', '--', '-1 is negative'])).toMatchObject({ action: { body: { messages: [{ content: '-1 is negative' }] } } });
  });

  it('takes every --group-by the API takes (one shared list)', () => {
    expect(API_USAGE_GROUPS).toContain('batch');
    for (const group of API_USAGE_GROUPS) {
      expect(parsed(['usage', '--group-by', group])).toMatchObject({ action: { kind: 'usage', query: { group_by: group } } });
    }
  });

  it('reports usage errors with the relevant help', () => {
    expect(usageError(['tenants', 'create'])).toBe('--name is required');
    expect(usageError(['tenants', 'create', '--name', 'A', '--rpm', 'ten'])).toMatch(/--rpm must be an integer >= 0, got 'ten'/);
    expect(usageError(['tenants', 'create', '--name', 'A', '--allowed-models', ','])).toMatch(/at least one/);
    expect(usageError(['tenants', 'list', '--bogus'])).toMatch(/unknown option '--bogus'/);
    expect(usageError(['tenants', 'get'])).toBe("missing required argument 'TENANT_ID'");
    expect(usageError(['keys', 'revoke', 'key_1', 'key_2'])).toMatch(/^too many arguments for 'revoke'/);
    expect(usageError(['keys', 'create', 'ten_1'])).toBe('--role is required');
    expect(usageError(['keys', 'create', 'ten_1', '--role', 'user', '--expires-at', 'soon'])).toMatch(/--expires-at must be ISO 8601/);
    expect(usageError(['models', 'add', 'm'])).toMatch(/exactly one of --gguf/);
    expect(usageError(['models', 'add', 'm', '--gguf', 'a.gguf', '--base-url', 'http://x'])).toMatch(/exactly one of --gguf/);
    expect(usageError(['models', 'add', 'm', '--base-url', 'http://x'])).toBe('--upstream-model is required');
    expect(usageError(['usage', '--group-by', 'week'])).toMatch(/--group-by must be one of day, model, .*batch/);
    expect(usageError(['chat', '--model', 'tiny'])).toBe("missing required argument 'PROMPT'");
    expect(usageError(['chat', 'hello'])).toBe('--model is required');
    expect(usageError([])).toBe('missing command');
    expect(usageError(['frobnicate'])).toBe("unknown command 'frobnicate'");
    expect(usageError(['tenants'])).toBe('missing tenants command');
    expect(usageError(['tenants', 'delete', 'ten_1'])).toBe("unknown command 'delete'");
    expect(usageError(['batch', 'frobnicate'])).toBe("unknown command 'frobnicate'");
    expect(usageError(['batch', 'submit'])).toMatch(/FILE/);
    expect(usageError(['billing', 'frobnicate'])).toMatch(/unknown command 'frobnicate'/);
    expect(usageError(['billing', 'close-day'])).toBe('--day is required');
    expect(usageError(['billing', 'close-day', '--day', '2025-4-1'])).toMatch(/--day must be YYYY-MM-DD/);
    expect(usageError(['tenants', 'list'], { SLUICE_URL: baseUrl })).toMatch(/no API key/);
    expect(usageError(['tenants', 'list', '--url', 'ftp://x'])).toMatch(/must be http or https/);
  });

  it('answers help without needing a key', () => {
    for (const argv of [['--help'], ['help'], ['tenants', '--help'], ['tenants', 'create', '-h'], ['help', 'audit', 'verify'], ['tenants', 'help', 'get']]) {
      const cmd = parsed(argv, {});
      expect(cmd.kind).toBe('help');
    }
    const text = (parsed(['keys', 'create', '--help'], {}) as { text: string }).text;
    expect(text).toMatch(/^Usage: sluice keys create TENANT_ID --role R/);
    expect(text).toContain('--expires-at ISO');
  });
});

describe('runCommand against an API double', () => {
  it('creates a tenant: POST with the bearer key and JSON body, prints a summary', async () => {
    routes.set('POST /v1/admin/tenants', { status: 201, body: tenant });
    const r = await run(['tenants', 'create', '--name', 'Acme', '--plan', 'pro', '--rpm', '60', '--max-concurrent', '4', '--budget-micros', '10000000', '--allowed-models', 'tiny,big']);
    expect(r).toMatchObject({ code: 0, err: '' });
    const req = only();
    expect(req).toEqual({
      method: 'POST',
      path: '/v1/admin/tenants',
      query: {},
      authorization: `Bearer ${KEY}`,
      contentType: 'application/json',
      body: { name: 'Acme', plan: 'pro', limits: { requests_per_minute: 60, max_concurrent: 4, monthly_budget_micros: 10_000_000, allowed_models: ['tiny', 'big'] } },
    });
    expect(r.out).toContain('Created tenant ten_1');
    expect(r.out).toMatch(/requests\/min\s+60/);
    expect(r.out).toMatch(/tokens\/min\s+unlimited/);
    expect(r.out).toMatch(/monthly budget\s+\$10\.00/);
    expect(r.out).toMatch(/allowed models\s+tiny, big/);
    expect(r.out).toContain('2025-01-01 00:00:00Z');
  });

  it('lists, gets and updates tenants', async () => {
    routes.set('GET /v1/admin/tenants', { status: 200, body: { object: 'list', data: [tenant, { ...tenant, id: 'ten_2', name: 'Beta', limits: { ...tenant.limits, allowed_models: null, monthly_budget_micros: null } }], has_more: true } });
    const list = await run(['tenants', 'list', '--limit', '2']);
    expect(list.code).toBe(0);
    expect(only()).toMatchObject({ method: 'GET', path: '/v1/admin/tenants', query: { limit: '2' }, body: undefined });
    const lines = list.out.split('\n');
    expect(lines[0]).toMatch(/^ID\s+NAME\s+PLAN\s+STATUS\s+RPM/);
    expect(lines[1]).toMatch(/^ten_1\s+Acme\s+pro\s+active\s+60\s+unlimited\s+4\s+\$10\.00\s+tiny,big/);
    expect(lines[2]).toMatch(/^ten_2\s+Beta\s+.*unlimited\s+all\s/);
    expect(lines[3]).toBe('More tenants: --after ten_2');

    recorded.length = 0;
    routes.set('GET /v1/admin/tenants/ten_1', { status: 200, body: tenant });
    expect((await run(['tenants', 'get', 'ten_1'])).out).toContain('Tenant ten_1');
    expect(only()).toMatchObject({ method: 'GET', path: '/v1/admin/tenants/ten_1' });

    recorded.length = 0;
    routes.set('PATCH /v1/admin/tenants/ten_1', { status: 200, body: { ...tenant, status: 'suspended' } });
    const upd = await run(['tenants', 'update', 'ten_1', '--status', 'suspended', '--tpm', '5000', '--allowed-models', '*']);
    expect(upd.code).toBe(0);
    expect(only()).toMatchObject({
      method: 'PATCH',
      path: '/v1/admin/tenants/ten_1',
      authorization: `Bearer ${KEY}`,
      body: { status: 'suspended', limits: { tokens_per_minute: 5000, allowed_models: null } },
    });
    expect(upd.out).toMatch(/status\s+suspended/);
  });

  it('creates a key and prints its secret once, clearly; lists and revokes keys', async () => {
    routes.set('POST /v1/admin/tenants/ten_1/keys', { status: 201, body: { ...key, key: 'sk-secret_abcdefghijklmnopqrstuvwxyz' } });
    const created = await run(['keys', 'create', 'ten_1', '--role', 'developer', '--name', 'ci', '--scopes', 'chat,model:tiny']);
    expect(created.code).toBe(0);
    expect(only()).toMatchObject({ method: 'POST', path: '/v1/admin/tenants/ten_1/keys', body: { role: 'developer', name: 'ci', scopes: ['chat', 'model:tiny'] } });
    const lines = created.out.split('\n');
    expect(lines[0]).toContain('Created key key_1 for tenant ten_1: role developer, scopes chat,model:tiny, expires never');
    expect(lines).toContain('    sk-secret_abcdefghijklmnopqrstuvwxyz');
    expect(created.out).toMatch(/shown only once/);

    recorded.length = 0;
    routes.set('GET /v1/admin/tenants/ten_1/keys', { status: 200, body: { object: 'list', data: [key, { ...key, id: 'key_2', name: null, scopes: null, revoked_at: 1_735_700_000 }], has_more: false } });
    const list = await run(['keys', 'list', 'ten_1']);
    expect(only()).toMatchObject({ method: 'GET', path: '/v1/admin/tenants/ten_1/keys', query: {} });
    expect(list.out).toMatch(/^key_1\s+ci\s+sk-abcd\s+developer\s+chat,model:tiny\s+active\s+never\s+never/m);
    expect(list.out).toMatch(/^key_2\s+-\s+sk-abcd\s+developer\s+all\s+revoked/m);
    expect(list.out).not.toContain('More keys');

    recorded.length = 0;
    routes.set('POST /v1/admin/keys/key_1/revoke', { status: 200, body: { ...key, revoked_at: 1_735_700_000 } });
    const revoked = await run(['keys', 'revoke', 'key_1']);
    expect(revoked.code).toBe(0);
    expect(only()).toMatchObject({ method: 'POST', path: '/v1/admin/keys/key_1/revoke', body: undefined, contentType: undefined });
    expect(revoked.out).toBe('Revoked key key_1 (sk-abcd…, tenant ten_1) at 2025-01-01 02:53:20Z.');

    recorded.length = 0;
    const refused = await run(['tenants', 'erase', 'ten_1']);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/--confirm/);
    expect(recorded).toHaveLength(0);
    routes.set('POST /v1/admin/tenants/ten_1/erase', { status: 200, body: { id: 'ten_1', object: 'tenant', name: 'acme', status: 'suspended', erased: { requests: 3, keys_revoked: 2 } } });
    const erased = await run(['tenants', 'erase', 'ten_1', '--confirm']);
    expect(erased.code).toBe(0);
    expect(only()).toMatchObject({ method: 'POST', path: '/v1/admin/tenants/ten_1/erase', body: { confirm: true } });
    expect(erased.out).toContain('Erased tenant ten_1 (acme); it is now suspended.');
    expect(erased.out).toContain('keys revoked: 2');

    recorded.length = 0;
    routes.set('POST /v1/admin/keys/key_1/rotate', { status: 201, body: { ...key, id: 'key_3', key: 'sk-newsecret', rotated_from: { id: 'key_1', expires_at: 1_735_700_000 } } });
    const rotated = await run(['keys', 'rotate', 'key_1', '--grace-seconds', '600']);
    expect(rotated.code).toBe(0);
    expect(only()).toMatchObject({ method: 'POST', path: '/v1/admin/keys/key_1/rotate', body: { grace_seconds: 600 } });
    expect(rotated.out).toContain('new key key_3');
    expect(rotated.out).toContain('sk-newsecret');
    expect(rotated.out).toContain('2025-01-01 02:53:20Z');
  });

  it('lists and adds models', async () => {
    routes.set('GET /v1/admin/models', { status: 200, body: { object: 'list', data: [model], has_more: false } });
    const list = await run(['models', 'list']);
    expect(only()).toMatchObject({ method: 'GET', path: '/v1/admin/models' });
    expect(list.out.split('\n')[1]).toMatch(/^tiny\s+4096\s+512\s+tiny-local-0\s+local\s+llama-cpp\s+active\s+\$0\.15\s+\$0\.60\s+tiny\.gguf$/);

    recorded.length = 0;
    const remote = {
      ...model, id: 'gpt', deployments: [{ ...model.deployments[0], id: 'gpt-cloud-0', pool: 'cloud', provider: 'openai-compatible', gguf_path: null, base_url: 'https://up.example/v1', upstream_model: 'gpt-4o-mini', api_key_ref: 'OPENAI' }],
    };
    routes.set('POST /v1/admin/models', { status: 201, body: remote });
    const add = await run(['models', 'add', 'gpt', '--base-url', 'https://up.example/v1', '--upstream-model', 'gpt-4o-mini', '--api-key-ref', 'OPENAI', '--pool', 'cloud', '--input-price', '150000']);
    expect(add.code).toBe(0);
    expect(only()).toMatchObject({
      method: 'POST',
      path: '/v1/admin/models',
      body: { id: 'gpt', deployments: [{ provider: 'openai-compatible', base_url: 'https://up.example/v1', upstream_model: 'gpt-4o-mini', api_key_ref: 'OPENAI', pool: 'cloud', price: { input_micros_per_mtok: 150_000 } }] },
    });
    expect(add.out).toContain('Added model gpt.');
    expect(add.out).toContain('https://up.example/v1 (gpt-4o-mini)');
  });

  it('summarises usage with the query parameters the API takes, and exact totals', async () => {
    routes.set('GET /v1/admin/usage', {
      status: 200,
      body: {
        object: 'usage_summary', tenant_id: 'ten_1', from: '2025-01-01T00:00:00.000Z', to: '2025-02-01T00:00:00.000Z', group_by: 'model',
        data: [
          { group: 'big', requests: 2, input_tokens: 100, output_tokens: 50, cost_micros: 1_500_001 },
          { group: 'tiny', requests: 3, input_tokens: 30, output_tokens: 20, cost_micros: 2_499_999 },
        ],
      },
    });
    const r = await run(['usage', '--from', '2025-01-01T00:00:00Z', '--to', '2025-02-01T00:00:00Z', '--group-by', 'model', '--tenant', 'ten_1']);
    expect(r.code).toBe(0);
    expect(only()).toMatchObject({
      method: 'GET', path: '/v1/admin/usage', query: { from: '2025-01-01T00:00:00Z', to: '2025-02-01T00:00:00Z', group_by: 'model', tenant_id: 'ten_1' },
    });
    const lines = r.out.split('\n');
    expect(lines[0]).toBe('Usage of tenant ten_1 from 2025-01-01 00:00:00Z to 2025-02-01 00:00:00Z, by model:');
    expect(lines[1]).toMatch(/^MODEL\s+REQUESTS\s+INPUT TOKENS\s+OUTPUT TOKENS\s+COST$/);
    expect(lines[2]).toMatch(/^big\s+2\s+100\s+50\s+\$1\.500001$/);
    expect(lines[4]).toMatch(/^TOTAL\s+5\s+130\s+70\s+\$4\.00$/);
  });

  it('lists the audit log', async () => {
    routes.set('GET /v1/admin/audit', {
      status: 200,
      body: {
        object: 'list',
        data: [{ seq: 7, created_at: '2025-01-02T03:04:05.000Z', actor: 'key:key_admin', tenant_id: 'ten_1', action: 'key.created', target: 'key:key_1', data: {}, prev_hash: 'a', hash: 'b' }],
        has_more: true,
      },
    });
    const r = await run(['audit', 'list', '--limit', '1']);
    expect(r.code).toBe(0);
    expect(only()).toMatchObject({ method: 'GET', path: '/v1/admin/audit', query: { limit: '1' } });
    expect(r.out).toMatch(/^7\s+2025-01-02 03:04:05Z\s+key:key_admin\s+ten_1\s+key\.created\s+key:key_1$/m);
    expect(r.out).toContain('Older entries: --before 7');
  });

  it('audit verify: exit 0 on an intact chain, 1 with the first bad seq and reason on a broken one', async () => {
    routes.set('GET /v1/admin/audit/verify', { status: 200, body: { object: 'audit_verification', ok: true, rows: 12, head_seq: 12, head_hash: 'ab'.repeat(32) } });
    const good = await run(['audit', 'verify']);
    expect(good).toMatchObject({ code: 0, err: '' });
    expect(good.out).toBe(`Audit chain OK: 12 entries verified, head at seq 12 (hash ${'ab'.repeat(8)}…).`);
    expect(only()).toMatchObject({ method: 'GET', path: '/v1/admin/audit/verify', authorization: `Bearer ${KEY}` });

    const broken = { object: 'audit_verification', ok: false, rows: 4, first_bad_seq: 5, reason: 'content does not match its hash' };
    routes.set('GET /v1/admin/audit/verify', { status: 409, body: broken });
    const bad = await run(['audit', 'verify']);
    expect(bad.code).toBe(1);
    expect(bad.out).toBe('Audit chain BROKEN at seq 5: content does not match its hash (4 entries verified before it).');

    const json = await run(['audit', 'verify', '--json']);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.out)).toEqual(broken);
  });

  it('audit verify --full asks for the whole chain; a stale or missing checkpoint is warned about', async () => {
    routes.set('GET /v1/admin/audit/verify', {
      status: 200,
      body: { object: 'audit_verification', ok: true, mode: 'full', rows: 3, head_seq: 3, head_hash: 'cd'.repeat(32), complete: true, checkpoint_status: 'stale', unprotected_rows: 2 },
    });
    const r = await run(['audit', 'verify', '--full']);
    expect(r.code).toBe(0);
    expect(only()).toMatchObject({ method: 'GET', path: '/v1/admin/audit/verify', query: { full: 'true' } });
    expect(r.out).toContain('Warning: the latest checkpoint is stale (2 rows after it).');
    routes.set('GET /v1/admin/audit/verify', {
      status: 200, body: { object: 'audit_verification', ok: true, rows: 0, head_seq: 0, head_hash: '00', complete: false, checkpoint_status: 'missing' },
    });
    const missing = await run(['audit', 'verify']);
    expect(missing.out).toContain('Warning: no audit checkpoint exists yet.');
    expect(missing.out).toContain('Only part of the rows after the latest checkpoint were checked');
  });

  it('keys create-operator creates a key of the operator through /v1/admin/keys', async () => {
    routes.set('POST /v1/admin/keys', {
      status: 201,
      body: { id: 'key_op', object: 'api_key', tenant_id: null, name: null, prefix: 'sk-op', role: 'operator_finance', scopes: null, expires_at: null, revoked_at: null, last_used_at: null, created_at: 1, key: 'sk-secret' },
    });
    const r = await run(['keys', 'create-operator', '--role', 'operator_finance']);
    expect(r.code).toBe(0);
    expect(only()).toMatchObject({ method: 'POST', path: '/v1/admin/keys', body: { role: 'operator_finance' } });
    expect(r.out).toContain('Created operator key key_op: role operator_finance');
    expect(r.out).toContain('sk-secret');
  });

  it('chat: sends one user message, prints the answer on stdout and usage on stderr', async () => {
    routes.set('POST /v1/chat/completions', {
      status: 200,
      body: {
        id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'tiny', system_fingerprint: null,
        choices: [{ index: 0, message: { role: 'assistant', content: 'Hello there.', refusal: null }, logprobs: null, finish_reason: 'stop' }],
        usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
      },
    });
    const r = await run(['chat', '--model', 'tiny', '--max-tokens', '16', 'Say hello']);
    expect(r.code).toBe(0);
    expect(only()).toMatchObject({
      method: 'POST', path: '/v1/chat/completions', contentType: 'application/json',
      body: { model: 'tiny', messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 16 },
    });
    expect(r.out).toBe('Hello there.');
    expect(r.err).toBe('[tiny · chatcmpl-1 · 9 prompt + 3 completion = 12 tokens · finish stop]');
  });

  it('--json prints the raw response', async () => {
    routes.set('GET /v1/admin/tenants/ten_1', { status: 200, body: tenant });
    const r = await run(['tenants', 'get', 'ten_1', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual(tenant);
  });

  it("prints the API's error message and exits 1", async () => {
    routes.set('GET /v1/admin/tenants/ten_x', {
      status: 404, body: { error: { message: 'Tenant not found', type: 'not_found_error', param: null, code: 'not_found' } },
    });
    const r = await run(['tenants', 'get', 'ten_x']);
    expect(r).toEqual({ code: 1, out: '', err: 'sluice: error: Tenant not found (HTTP 404, not_found_error, code not_found)' });

    routes.set('POST /v1/chat/completions', {
      status: 429, headers: { 'retry-after': '7' },
      body: { error: { message: 'Rate limit reached for requests', type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded' } },
    });
    const limited = await run(['chat', '--model', 'tiny', 'hi']);
    expect(limited.code).toBe(1);
    expect(limited.err).toBe('sluice: error: Rate limit reached for requests (HTTP 429, rate_limit_error, code rate_limit_exceeded)\nsluice: retry after 7 s');

    // A 409 that is an error, not a verification result, is still an error.
    routes.set('GET /v1/admin/audit/verify', { status: 409, body: { error: { message: 'busy', type: 'conflict_error', param: null, code: null } } });
    expect(await run(['audit', 'verify'])).toMatchObject({ code: 1, out: '', err: 'sluice: error: busy (HTTP 409, conflict_error)' });
  });

  it('batch commands print a batch, and report API errors in the same words as the other commands', async () => {
    const batch = {
      id: 'batch_1', object: 'batch', status: 'completed', input_file_id: 'file_1', output_file_id: 'file_2', error_file_id: null, created_at: 1_735_689_600,
      request_counts: { total: 3, completed: 2, failed: 1 }, errors: null,
    };
    routes.set('GET /v1/batches/batch_1', { status: 200, body: batch });
    const ok = await run(['batch', 'status', 'batch_1']);
    expect(ok).toEqual({ code: 0, out: 'batch_1  completed  3/3 done, 1 failed\n  output: file_2', err: '' });
    expect(only()).toMatchObject({ method: 'GET', path: '/v1/batches/batch_1', authorization: `Bearer ${KEY}` });

    const missing = await run(['batch', 'status', 'batch_x']);
    expect(missing).toEqual({ code: 1, out: '', err: 'sluice: error: Unknown route GET /v1/batches/batch_x (HTTP 404, not_found_error, code unknown_url)' });
    const fromTenants = await run(['tenants', 'get', 'ten_x']);
    expect(fromTenants.err).toBe('sluice: error: Unknown route GET /v1/admin/tenants/ten_x (HTTP 404, not_found_error, code unknown_url)');
  });

  it('exits 1 when the API is unreachable, and 2 on a usage error without calling it', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const deadUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const down = await run(['models', 'list'], { SLUICE_URL: deadUrl, SLUICE_API_KEY: KEY });
    expect(down.code).toBe(1);
    expect(down.err).toContain(`cannot reach the API at ${deadUrl}`);

    const usage = await run(['tenants', 'create', '--plan', 'pro']);
    expect(usage.code).toBe(2);
    expect(usage.err).toMatch(/^sluice: --name is required\n\nUsage: sluice tenants create --name N/);
    expect(recorded).toHaveLength(0);
  });

  it('runCommand prints help', async () => {
    const out: string[] = [];
    const code = await runCommand({ kind: 'help', text: 'Usage: x' }, { fetch: globalThis.fetch, out: (l) => out.push(l), err: () => undefined });
    expect({ code, out }).toEqual({ code: 0, out: ['Usage: x'] });
  });
});

it('formatMicros is exact integer arithmetic', () => {
  expect(formatMicros(0)).toBe('$0.00');
  expect(formatMicros(1)).toBe('$0.000001');
  expect(formatMicros(1_500_000)).toBe('$1.50');
  expect(formatMicros('9007199254740993')).toBe('$9007199254.740993');
});

it('the bin shim runs the CLI under tsx and forwards the exit code', async () => {
  routes.set('GET /v1/admin/audit/verify', { status: 409, body: { object: 'audit_verification', ok: false, rows: 0, first_bad_seq: 1, reason: 'row 1 is missing' } });
  const shim = fileURLToPath(new URL('../../scripts/sluice-cli.js', import.meta.url));
  const child = spawn(process.execPath, [shim, 'audit', 'verify'], {
    cwd: '/',
    env: { PATH: process.env.PATH, SLUICE_URL: baseUrl, SLUICE_API_KEY: KEY },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  expect({ code, stdout, stderr }).toEqual({ code: 1, stdout: 'Audit chain BROKEN at seq 1: row 1 is missing (0 entries verified before it).\n', stderr: '' });
  expect(only()).toMatchObject({ method: 'GET', path: '/v1/admin/audit/verify', authorization: `Bearer ${KEY}` });
});
