/**
 * `sluice`: the operator CLI. It is only an HTTP client of the admin API (`/v1/admin/…`) and of
 * `/v1/chat/completions`; it never opens the database.
 *
 * Shape: `parseCommand(argv, env)` turns arguments into a {@link Command} without side effects;
 * `runCommand(command, deps)` makes the one API call and prints the result through injected
 * `fetch`/`out`/`err`; `cli` chains the two and maps usage errors to exit code 2. The main at the
 * bottom, guarded so that importing this module runs nothing, is the only place that reads
 * `process.env` or sets the exit code.
 *
 * Exit codes: 0 success; 1 API error, unreachable server, or a broken audit chain; 2 usage error.
 *
 * Adding a command (e.g. `batch submit`, `billing run`): a variant of {@link Action}, a
 * {@link CommandSpec} in `COMMANDS`, and a {@link Handler} in `HANDLERS`; the type of `HANDLERS`
 * makes a missing handler a compile error.
 */
import { createWriteStream, realpathSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { USAGE_GROUPS, type UsageGroup } from '../domain/usage.js';
import { runBatchOp, type BatchOp } from './batch-cli.js';

/** Where, and as whom, the CLI talks to the API. */
export interface Connection {
  /** Base URL of the API, without `/v1` (`--url` or `SLUICE_URL`). @default http://localhost:8080 */
  url: string;
  /** Bearer API key (`--key` or `SLUICE_API_KEY`). Required. */
  key: string;
}

/** Default API base URL. */
export const DEFAULT_URL = 'http://localhost:8080';

// ---------------------------------------------------------------------------------------------
// Request bodies (snake_case, exactly what the API accepts)
// ---------------------------------------------------------------------------------------------

/** Tenant limits; `null` = unlimited (or all models). Omitted fields are left as they are. */
export interface TenantLimitsInput {
  requests_per_minute?: number | null;
  tokens_per_minute?: number | null;
  max_concurrent?: number | null;
  monthly_budget_micros?: number | null;
  allowed_models?: string[] | null;
}

export interface TenantCreateBody {
  name: string;
  plan?: string;
  limits?: TenantLimitsInput;
}

export interface TenantUpdateBody {
  name?: string;
  plan?: string;
  status?: 'active' | 'suspended';
  limits?: TenantLimitsInput;
}

export interface KeyCreateBody {
  role: string;
  name?: string;
  scopes?: string[];
  expires_at?: string;
}

export interface DeploymentBody {
  provider: 'llama-cpp' | 'openai-compatible';
  pool?: string;
  gguf_path?: string;
  base_url?: string;
  upstream_model?: string;
  api_key_ref?: string;
  price?: { input_micros_per_mtok?: number; output_micros_per_mtok?: number };
}

export interface ModelCreateBody {
  id: string;
  context_length?: number;
  max_output_tokens?: number;
  deployments: DeploymentBody[];
}

export interface ChatBody {
  model: string;
  messages: Array<{ role: 'user'; content: string }>;
  max_tokens?: number;
}

/** Query of `GET /v1/admin/usage`. */
export interface UsageQuery {
  from?: string;
  to?: string;
  group_by?: UsageGroup;
  tenant_id?: string;
}

export { USAGE_GROUPS, type UsageGroup };

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/** One API operation, fully parsed and validated. */
export type Action =
  | { kind: 'tenants.create'; body: TenantCreateBody }
  | { kind: 'tenants.list'; limit: number | null; after: string | null }
  | { kind: 'tenants.get'; id: string }
  | { kind: 'tenants.erase'; id: string }
  | { kind: 'tenants.update'; id: string; body: TenantUpdateBody }
  | { kind: 'keys.create'; tenantId: string; body: KeyCreateBody }
  | { kind: 'keys.list'; tenantId: string; limit: number | null; after: string | null }
  | { kind: 'keys.revoke'; keyId: string }
  | { kind: 'keys.rotate'; keyId: string; graceSeconds: number | undefined }
  | { kind: 'models.list' }
  | { kind: 'models.add'; body: ModelCreateBody }
  | { kind: 'usage'; query: UsageQuery }
  | { kind: 'audit.list'; limit: number | null; before: number | null }
  | { kind: 'audit.verify' }
  | { kind: 'chat'; body: ChatBody }
  | { kind: 'batch'; op: BatchOp }
  | { kind: 'billing.run'; period: string; tenantId: string | null; wait: boolean }
  | { kind: 'billing.closeDay'; day: string; tenantId: string | null; wait: boolean }
  | { kind: 'invoices.list'; period: string | null; tenantId: string | null; status: string | null; limit: number | null; after: string | null }
  | { kind: 'invoices.get'; id: string }
  | { kind: 'invoices.void'; id: string; reason: string }
  | { kind: 'invoices.reissue'; id: string }
  | { kind: 'export'; what: 'usage' | 'invoices'; period: string; tenantId: string | null; format: 'csv' | 'json'; output: string };

/** What `runCommand` executes: print help, or call the API. */
export type Command =
  | { kind: 'help'; text: string }
  | { kind: 'api'; conn: Connection; json: boolean; action: Action };

/** The outcome of parsing: a command, or a usage error with the help to show (exit code 2). */
export type ParseResult = { ok: true; command: Command } | { ok: false; error: string; help: string };

/** Injected effects of `runCommand`. */
export interface CliDeps {
  fetch: typeof fetch;
  /** Writes one line (no trailing newline) to standard output. */
  out(line: string): void;
  /** Writes one line (no trailing newline) to standard error. */
  err(line: string): void;
  /** Rewrites a progress line in place (stderr is a TTY); absent: progress is printed as lines. */
  progress?: ((line: string) => void) | null;
}

class UsageError extends Error {
  override readonly name = 'UsageError';
}

// ---------------------------------------------------------------------------------------------
// Command table
// ---------------------------------------------------------------------------------------------

interface OptionSpec {
  type: 'string' | 'boolean';
  /** Placeholder shown in help, for string options. */
  arg?: string;
  help: string;
  short?: string;
}

type Values = Readonly<Record<string, string | boolean | undefined>>;

interface CommandSpec {
  /** Words that select the command: `['tenants', 'create']`, `['usage']`. */
  path: readonly string[];
  /** Arguments after the path, for help. */
  synopsis: string;
  summary: string;
  options: Readonly<Record<string, OptionSpec>>;
  /** Names of the positional arguments; with `variadic`, the last one takes the rest (at least one). */
  args: readonly string[];
  variadic?: boolean;
  build(values: Values, args: readonly string[]): Action;
}

const GLOBAL_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  url: { type: 'string', arg: 'URL', help: `API base URL (env SLUICE_URL, default ${DEFAULT_URL})` },
  key: { type: 'string', arg: 'KEY', help: 'API key (env SLUICE_API_KEY; prefer the env var, flags show up in ps)' },
  json: { type: 'boolean', help: 'print the raw JSON response instead of a table or summary' },
  help: { type: 'boolean', short: 'h', help: 'show help' },
};

const LIMIT_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  plan: { type: 'string', arg: 'P', help: 'plan name (default standard)' },
  rpm: { type: 'string', arg: 'N', help: "requests per minute ('unlimited' = no limit)" },
  tpm: { type: 'string', arg: 'N', help: "tokens per minute ('unlimited' = no limit)" },
  'max-concurrent': { type: 'string', arg: 'N', help: "requests in flight at once ('unlimited' = no limit)" },
  'budget-micros': { type: 'string', arg: 'N', help: "monthly budget in micro-USD ('unlimited' = no limit)" },
  'allowed-models': { type: 'string', arg: 'a,b', help: "models the tenant may use ('*' = all)" },
};

const PAGE_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  limit: { type: 'string', arg: 'N', help: 'page size, 1-100 (default 20)' },
  after: { type: 'string', arg: 'ID', help: 'start after this ID (the cursor printed under a full page)' },
};

function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

function requiredStr(values: Values, name: string): string {
  const v = str(values, name);
  if (v === undefined || v.trim() === '') throw new UsageError(`--${name} is required`);
  return v;
}

function parseInteger(raw: string, label: string, min: number): number {
  const n = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`${label} must be an integer >= ${min}, got '${raw}'`);
  return n;
}

function intOpt(values: Values, name: string, min = 0): number | undefined {
  const v = str(values, name);
  return v === undefined ? undefined : parseInteger(v, `--${name}`, min);
}

/** A limit: a non-negative integer, or `unlimited` (null). */
function limitOpt(values: Values, name: string): number | null | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  return v === 'unlimited' ? null : parseInteger(v, `--${name}`, 0);
}

function listOpt(values: Values, name: string): string[] | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  const items = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 0) throw new UsageError(`--${name} needs at least one comma-separated value`);
  return items;
}

/** A time the API accepts: ISO 8601 or unix seconds. */
function timeOpt(values: Values, name: string): string | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) && Number.isNaN(new Date(v).getTime())) throw new UsageError(`--${name} must be ISO 8601 (e.g. 2025-01-31T00:00:00Z) or unix seconds, got '${v}'`);
  return v;
}

/** `--rpm`, `--tpm`, … as a `limits` object with only the given fields; undefined when none is given. */
function limitsOf(values: Values): TenantLimitsInput | undefined {
  const limits: TenantLimitsInput = {};
  const fields = [
    ['rpm', 'requests_per_minute'],
    ['tpm', 'tokens_per_minute'],
    ['max-concurrent', 'max_concurrent'],
    ['budget-micros', 'monthly_budget_micros'],
  ] as const;
  for (const [flag, field] of fields) {
    const v = limitOpt(values, flag);
    if (v !== undefined) limits[field] = v;
  }
  const models = str(values, 'allowed-models');
  if (models !== undefined) limits.allowed_models = models.trim() === '*' ? null : listOpt(values, 'allowed-models') ?? null;
  return Object.keys(limits).length === 0 ? undefined : limits;
}

function pageOf(values: Values): { limit: number | null; after: string | null } {
  return { limit: intOpt(values, 'limit', 1) ?? null, after: str(values, 'after') ?? null };
}

const PERIOD = /^\d{4}-(0[1-9]|1[0-2])$/;

const DAY = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;

function dayOpt(values: Values): string {
  const d = requiredStr(values, 'day');
  if (!DAY.test(d)) throw new UsageError(`--day must be YYYY-MM-DD, got '${d}'`);
  return d;
}

function periodOpt(values: Values): string {
  const p = requiredStr(values, 'period');
  if (!PERIOD.test(p)) throw new UsageError(`--period must be YYYY-MM, got '${p}'`);
  return p;
}

const EXPORT_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  period: { type: 'string', arg: 'YYYY-MM', help: 'the month (required)' },
  tenant: { type: 'string', arg: 'ID', help: 'one tenant (super admin; others always get their own)' },
  format: { type: 'string', arg: 'F', help: 'csv (default) or json' },
  output: { type: 'string', short: 'o', arg: 'FILE', help: 'file to write (required)' },
};

function exportOf(v: Values, what: 'usage' | 'invoices'): Action {
  const format = str(v, 'format') ?? 'csv';
  if (format !== 'csv' && format !== 'json') throw new UsageError(`--format must be csv or json, got '${format}'`);
  return { kind: 'export', what, period: periodOpt(v), tenantId: str(v, 'tenant') ?? null, format, output: requiredStr(v, 'output') };
}

const COMMANDS: readonly CommandSpec[] = [
  {
    path: ['tenants', 'create'],
    synopsis: '--name N [--plan P] [--rpm N] [--tpm N] [--max-concurrent N] [--budget-micros N] [--allowed-models a,b]',
    summary: 'create a tenant',
    options: { name: { type: 'string', arg: 'N', help: 'tenant name (required)' }, ...LIMIT_OPTIONS },
    args: [],
    build(v) {
      const body: TenantCreateBody = { name: requiredStr(v, 'name') };
      const plan = str(v, 'plan');
      if (plan !== undefined) body.plan = plan;
      const limits = limitsOf(v);
      if (limits !== undefined) body.limits = limits;
      return { kind: 'tenants.create', body };
    },
  },
  {
    path: ['tenants', 'list'],
    synopsis: '[--limit N] [--after ID]',
    summary: 'list tenants',
    options: PAGE_OPTIONS,
    args: [],
    build: (v) => ({ kind: 'tenants.list', ...pageOf(v) }),
  },
  {
    path: ['tenants', 'get'],
    synopsis: 'TENANT_ID',
    summary: 'show a tenant and its limits',
    options: {},
    args: ['TENANT_ID'],
    build: (_v, [id]) => ({ kind: 'tenants.get', id: id as string }),
  },
  {
    path: ['tenants', 'erase'],
    synopsis: 'TENANT_ID --confirm',
    summary: "erase a tenant's stored prompts, outputs and files, revoke its keys and suspend it (usage, invoices and audit stay)",
    options: { confirm: { type: 'boolean', help: 'required: erasing cannot be undone' } },
    args: ['TENANT_ID'],
    build: (v, [id]) => {
      if (v.confirm !== true) throw new UsageError('tenants erase cannot be undone: add --confirm');
      return { kind: 'tenants.erase', id: id as string };
    },
  },
  {
    path: ['tenants', 'update'],
    synopsis: 'TENANT_ID [--name N] [--plan P] [--status active|suspended] [--rpm N] [--tpm N] [--max-concurrent N] [--budget-micros N] [--allowed-models a,b]',
    summary: "change a tenant's name, plan, status or limits (only the given fields change)",
    options: {
      name: { type: 'string', arg: 'N', help: 'new name' },
      status: { type: 'string', arg: 'S', help: 'active or suspended' },
      ...LIMIT_OPTIONS,
    },
    args: ['TENANT_ID'],
    build(v, [id]) {
      const body: TenantUpdateBody = {};
      const name = str(v, 'name');
      if (name !== undefined) body.name = name;
      const plan = str(v, 'plan');
      if (plan !== undefined) body.plan = plan;
      const status = str(v, 'status');
      if (status !== undefined) {
        if (status !== 'active' && status !== 'suspended') throw new UsageError(`--status must be active or suspended, got '${status}'`);
        body.status = status;
      }
      const limits = limitsOf(v);
      if (limits !== undefined) body.limits = limits;
      if (Object.keys(body).length === 0) throw new UsageError('nothing to update: give at least one of --name, --plan, --status or a limit');
      return { kind: 'tenants.update', id: id as string, body };
    },
  },
  {
    path: ['keys', 'create'],
    synopsis: 'TENANT_ID --role R [--name N] [--scopes a,b] [--expires-at ISO]',
    summary: 'create an API key; its secret is printed once',
    options: {
      role: { type: 'string', arg: 'R', help: 'tenant_admin, developer, analyst, finance or user (required)' },
      name: { type: 'string', arg: 'N', help: 'a label for the key' },
      scopes: { type: 'string', arg: 'a,b', help: 'narrower permissions and model:<id> entries (default: all of the role)' },
      'expires-at': { type: 'string', arg: 'ISO', help: 'expiry time, ISO 8601 (default: never)' },
    },
    args: ['TENANT_ID'],
    build(v, [tenantId]) {
      const body: KeyCreateBody = { role: requiredStr(v, 'role') };
      const name = str(v, 'name');
      if (name !== undefined) body.name = name;
      const scopes = listOpt(v, 'scopes');
      if (scopes !== undefined) body.scopes = scopes;
      const expiresAt = timeOpt(v, 'expires-at');
      if (expiresAt !== undefined) body.expires_at = expiresAt;
      return { kind: 'keys.create', tenantId: tenantId as string, body };
    },
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
  {
    path: ['models', 'list'],
    synopsis: '',
    summary: 'list models with their deployments and current prices',
    options: {},
    args: [],
    build: () => ({ kind: 'models.list' }),
  },
  {
    path: ['models', 'add'],
    synopsis:
      'MODEL_ID (--gguf PATH | --base-url URL --upstream-model M [--api-key-ref REF]) [--pool P] [--context N] [--max-output N] [--input-price MICROS_PER_MTOK] [--output-price MICROS_PER_MTOK]',
    summary: 'add a model with one deployment: llama.cpp (--gguf) or an OpenAI-compatible upstream (--base-url)',
    options: {
      gguf: { type: 'string', arg: 'PATH', help: 'GGUF file, absolute or relative to <data dir>/models (llama-cpp)' },
      'base-url': { type: 'string', arg: 'URL', help: 'upstream base URL (openai-compatible)' },
      'upstream-model': { type: 'string', arg: 'M', help: 'model name at the upstream (openai-compatible)' },
      'api-key-ref': { type: 'string', arg: 'REF', help: 'workers read the upstream key from SLUICE_UPSTREAM_KEY_<REF>' },
      pool: { type: 'string', arg: 'P', help: 'inference pool (default local)' },
      context: { type: 'string', arg: 'N', help: 'context length in tokens (default 2048)' },
      'max-output': { type: 'string', arg: 'N', help: 'max completion tokens (default min(512, context))' },
      'input-price': { type: 'string', arg: 'MICROS', help: 'micro-USD per million input tokens (default 0)' },
      'output-price': { type: 'string', arg: 'MICROS', help: 'micro-USD per million output tokens (default 0)' },
    },
    args: ['MODEL_ID'],
    build(v, [id]) {
      const gguf = str(v, 'gguf');
      const baseUrl = str(v, 'base-url');
      if ((gguf === undefined) === (baseUrl === undefined)) throw new UsageError('give exactly one of --gguf (llama.cpp) or --base-url (openai-compatible)');
      let deployment: DeploymentBody;
      if (gguf !== undefined) {
        for (const flag of ['upstream-model', 'api-key-ref']) {
          if (str(v, flag) !== undefined) throw new UsageError(`--${flag} only applies with --base-url`);
        }
        deployment = { provider: 'llama-cpp', gguf_path: gguf };
      } else {
        deployment = { provider: 'openai-compatible', base_url: baseUrl as string, upstream_model: requiredStr(v, 'upstream-model') };
        const ref = str(v, 'api-key-ref');
        if (ref !== undefined) deployment.api_key_ref = ref;
      }
      const pool = str(v, 'pool');
      if (pool !== undefined) deployment.pool = pool;
      const inputPrice = intOpt(v, 'input-price');
      const outputPrice = intOpt(v, 'output-price');
      if (inputPrice !== undefined || outputPrice !== undefined) {
        deployment.price = {};
        if (inputPrice !== undefined) deployment.price.input_micros_per_mtok = inputPrice;
        if (outputPrice !== undefined) deployment.price.output_micros_per_mtok = outputPrice;
      }
      const body: ModelCreateBody = { id: id as string, deployments: [deployment] };
      const context = intOpt(v, 'context', 1);
      if (context !== undefined) body.context_length = context;
      const maxOutput = intOpt(v, 'max-output', 1);
      if (maxOutput !== undefined) body.max_output_tokens = maxOutput;
      return { kind: 'models.add', body };
    },
  },
  {
    path: ['billing', 'run'],
    synopsis: '--period YYYY-MM [--tenant ID] [--no-wait]',
    summary: 'bill a closed calendar month (UTC): one invoice per tenant, reconciled with the ledger',
    options: {
      period: { type: 'string', arg: 'YYYY-MM', help: 'the month to bill (required; must have ended)' },
      tenant: { type: 'string', arg: 'ID', help: 'one tenant (default: every billable tenant; finance keys: their own)' },
      'no-wait': { type: 'boolean', help: 'start the workflows and print their IDs without waiting' },
    },
    args: [],
    build: (v) => ({ kind: 'billing.run', period: periodOpt(v), tenantId: str(v, 'tenant') ?? null, wait: v['no-wait'] !== true }),
  },
  {
    path: ['billing', 'close-day'],
    synopsis: '--day YYYY-MM-DD [--tenant ID] [--no-wait]',
    summary: 'close a UTC day: each tenant\'s billable totals for it, written once and checked against the ledger',
    options: {
      day: { type: 'string', arg: 'YYYY-MM-DD', help: 'the day to close (required; must have ended)' },
      tenant: { type: 'string', arg: 'ID', help: 'one tenant (default: every tenant with usage that day; finance keys: their own)' },
      'no-wait': { type: 'boolean', help: 'start the workflow and print its ID without waiting' },
    },
    args: [],
    build: (v) => ({ kind: 'billing.closeDay', day: dayOpt(v), tenantId: str(v, 'tenant') ?? null, wait: v['no-wait'] !== true }),
  },
  {
    path: ['invoices', 'list'],
    synopsis: '[--period YYYY-MM] [--tenant ID] [--status issued|void] [--limit N] [--after ID]',
    summary: 'list invoices',
    options: {
      period: { type: 'string', arg: 'YYYY-MM', help: 'one month' },
      tenant: { type: 'string', arg: 'ID', help: 'one tenant (super admin)' },
      status: { type: 'string', arg: 'S', help: 'issued or void' },
      ...PAGE_OPTIONS,
    },
    args: [],
    build(v) {
      const period = str(v, 'period');
      if (period !== undefined && !PERIOD.test(period)) throw new UsageError(`--period must be YYYY-MM, got '${period}'`);
      return { kind: 'invoices.list', period: period ?? null, tenantId: str(v, 'tenant') ?? null, status: str(v, 'status') ?? null, ...pageOf(v) };
    },
  },
  {
    path: ['invoices', 'get'],
    synopsis: 'INVOICE_ID',
    summary: 'show an invoice with its lines',
    options: {},
    args: ['INVOICE_ID'],
    build: (_v, [id]) => ({ kind: 'invoices.get', id: id as string }),
  },
  {
    path: ['invoices', 'void'],
    synopsis: 'INVOICE_ID --reason TEXT',
    summary: 'void an invoice (audited); `invoices reissue` then bills the period again',
    options: { reason: { type: 'string', arg: 'TEXT', help: 'why (required, audited)' } },
    args: ['INVOICE_ID'],
    build: (v, [id]) => ({ kind: 'invoices.void', id: id as string, reason: requiredStr(v, 'reason') }),
  },
  {
    path: ['invoices', 'reissue'],
    synopsis: 'INVOICE_ID',
    summary: 'issue the next version of a void invoice (audited)',
    options: {},
    args: ['INVOICE_ID'],
    build: (_v, [id]) => ({ kind: 'invoices.reissue', id: id as string }),
  },
  {
    path: ['invoices', 'export'],
    synopsis: '--period YYYY-MM [--tenant ID] [--format csv|json] -o FILE',
    summary: "download a month's invoice lines (streamed)",
    options: EXPORT_OPTIONS,
    args: [],
    build: (v) => exportOf(v, 'invoices'),
  },
  {
    path: ['usage', 'export'],
    synopsis: '--period YYYY-MM [--tenant ID] [--format csv|json] -o FILE',
    summary: "download a month's raw usage ledger (streamed)",
    options: EXPORT_OPTIONS,
    args: [],
    build: (v) => exportOf(v, 'usage'),
  },
  {
    path: ['usage'],
    synopsis: `[--from ISO] [--to ISO] [--group-by ${USAGE_GROUPS.join('|')}] [--tenant ID]`,
    summary: 'usage totals: requests, tokens, cost (default: this month so far)',
    options: {
      from: { type: 'string', arg: 'ISO', help: 'start, inclusive (default: first day of this month, UTC)' },
      to: { type: 'string', arg: 'ISO', help: 'end, exclusive (default: now)' },
      'group-by': { type: 'string', arg: 'G', help: USAGE_GROUPS.join(', ') },
      tenant: { type: 'string', arg: 'ID', help: 'one tenant (super admin; others always see their own)' },
    },
    args: [],
    build(v) {
      const query: UsageQuery = {};
      const from = timeOpt(v, 'from');
      if (from !== undefined) query.from = from;
      const to = timeOpt(v, 'to');
      if (to !== undefined) query.to = to;
      const groupBy = str(v, 'group-by');
      if (groupBy !== undefined) {
        if (!(USAGE_GROUPS as readonly string[]).includes(groupBy)) throw new UsageError(`--group-by must be one of ${USAGE_GROUPS.join(', ')}, got '${groupBy}'`);
        query.group_by = groupBy as UsageGroup;
      }
      const tenant = str(v, 'tenant');
      if (tenant !== undefined) query.tenant_id = tenant;
      return { kind: 'usage', query };
    },
  },
  {
    path: ['audit', 'list'],
    synopsis: '[--limit N] [--before SEQ]',
    summary: 'latest audit log entries, newest first',
    options: {
      limit: { type: 'string', arg: 'N', help: 'how many, 1-100 (default 20)' },
      before: { type: 'string', arg: 'SEQ', help: 'entries older than this sequence number' },
    },
    args: [],
    build: (v) => ({ kind: 'audit.list', limit: intOpt(v, 'limit', 1) ?? null, before: intOpt(v, 'before', 1) ?? null }),
  },
  {
    path: ['audit', 'verify'],
    synopsis: '',
    summary: 'check the hash chain of the audit log; exit code 1 if it is broken',
    options: {},
    args: [],
    build: () => ({ kind: 'audit.verify' }),
  },
  {
    path: ['chat'],
    synopsis: '--model M [--max-tokens N] PROMPT...',
    summary: 'one synchronous chat completion: the answer on stdout, usage on stderr',
    options: {
      model: { type: 'string', arg: 'M', help: 'model ID (required)' },
      'max-tokens': { type: 'string', arg: 'N', help: 'max completion tokens' },
    },
    args: ['PROMPT'],
    variadic: true,
    build(v, words) {
      const prompt = words.join(' ');
      if (prompt.trim() === '') throw new UsageError('the prompt is empty');
      const body: ChatBody = { model: requiredStr(v, 'model'), messages: [{ role: 'user', content: prompt }] };
      const maxTokens = intOpt(v, 'max-tokens', 1);
      if (maxTokens !== undefined) body.max_tokens = maxTokens;
      return { kind: 'chat', body };
    },
  },
  {
    path: ['batch', 'submit'],
    synopsis: 'FILE [--model M] [--max-tokens N] [--wait]',
    summary: 'upload a JSONL batch file (or a plain file, one prompt a line) and start the batch; --wait shows progress',
    options: {
      model: { type: 'string', arg: 'M', help: 'model for a plain prompts file, or for lines whose body has none' },
      'max-tokens': { type: 'string', arg: 'N', help: 'max completion tokens per converted prompt' },
      wait: { type: 'boolean', help: 'poll with a progress bar (done/failed/total, rate, ETA) until the batch ends' },
    },
    args: ['FILE'],
    build: (v, [file]) => ({ kind: 'batch', op: { op: 'submit', file: file as string, model: str(v, 'model') ?? null, maxTokens: intOpt(v, 'max-tokens', 1) ?? null, wait: v.wait === true } }),
  },
  { path: ['batch', 'status'], synopsis: 'BATCH_ID', summary: 'status and request counts of a batch', options: {}, args: ['BATCH_ID'], build: (_v, [id]) => ({ kind: 'batch', op: { op: 'status', id: id as string } }) },
  {
    path: ['batch', 'results'], synopsis: 'BATCH_ID [-o FILE]', summary: 'the output file of a batch (JSONL), to stdout or a file',
    options: { output: { type: 'string', short: 'o', arg: 'FILE', help: 'write to this file' } }, args: ['BATCH_ID'],
    build: (v, [id]) => ({ kind: 'batch', op: { op: 'results', id: id as string, output: str(v, 'output') ?? null } }),
  },
  {
    path: ['batch', 'errors'], synopsis: 'BATCH_ID [-o FILE]', summary: 'the error file of a batch, or its validation errors',
    options: { output: { type: 'string', short: 'o', arg: 'FILE', help: 'write to this file' } }, args: ['BATCH_ID'],
    build: (v, [id]) => ({ kind: 'batch', op: { op: 'errors', id: id as string, output: str(v, 'output') ?? null } }),
  },
  { path: ['batch', 'cancel'], synopsis: 'BATCH_ID', summary: 'cancel a batch: no new lines start, partial output is written', options: {}, args: ['BATCH_ID'], build: (_v, [id]) => ({ kind: 'batch', op: { op: 'cancel', id: id as string } }) },
  {
    path: ['batch', 'list'], synopsis: '[--limit N] [--after ID]', summary: 'batches of your tenant, newest first', options: PAGE_OPTIONS, args: [],
    build: (v) => ({ kind: 'batch', op: { op: 'list', ...pageOf(v) } }),
  },
];

// ---------------------------------------------------------------------------------------------
// Help
// ---------------------------------------------------------------------------------------------

function optionLines(options: Readonly<Record<string, OptionSpec>>): string[] {
  const rows = Object.entries(options).map(([name, o]) => [
    `  ${o.short ? `-${o.short}, ` : ''}--${name}${o.arg ? ` ${o.arg}` : ''}`,
    o.help,
  ]);
  return formatTable(rows, 3);
}

function commandLine(spec: CommandSpec): string {
  return ['sluice', ...spec.path, spec.synopsis].filter((s) => s !== '').join(' ');
}

/** Help for everything, one group (`tenants`), or one command. */
export function helpText(topic: readonly string[] = []): string {
  const exact = COMMANDS.find((c) => c.path.join(' ') === topic.join(' '));
  if (exact) {
    return [
      `Usage: ${commandLine(exact)}`,
      '',
      `${exact.summary[0]?.toUpperCase() ?? ''}${exact.summary.slice(1)}.`,
      ...(Object.keys(exact.options).length > 0 ? ['', 'Options:', ...optionLines(exact.options)] : []),
      '',
      'Global options:',
      ...optionLines(GLOBAL_OPTIONS),
    ].join('\n');
  }
  const group = topic.length > 0 ? COMMANDS.filter((c) => c.path[0] === topic[0]) : [];
  const shown = group.length > 0 ? group : COMMANDS;
  return [
    group.length > 0 ? `Usage: sluice ${topic[0]} <command> [options]` : 'Usage: sluice <command> [options]',
    '',
    'Sluice operator CLI: a client of the Sluice HTTP API.',
    '',
    'Commands:',
    ...formatTable(shown.map((c) => [`  sluice ${c.path.join(' ')}`, c.summary]), 3),
    '',
    'Global options:',
    ...optionLines(GLOBAL_OPTIONS),
    '',
    'Environment: SLUICE_URL, SLUICE_API_KEY. Run `sluice <command> --help` for its options.',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/** The leading words of argv (the command path), skipping global options and their values. */
function leadingWords(argv: readonly string[]): string[] {
  const words: string[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    const token = argv[i] as string;
    if (token === '--') break;
    if (token === '--url' || token === '--key') i += 1;
    else if (!token.startsWith('-')) words.push(token);
  }
  return words;
}

function normalizeUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--url / SLUICE_URL is not a URL: '${raw}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--url / SLUICE_URL must be http or https: '${raw}'`);
  // The API's paths start with /v1; accept a base URL given as the OpenAI SDK's baseURL too.
  return url.href.replace(/\/+$/, '').replace(/\/v1$/, '');
}

/**
 * Parses CLI arguments (without `node` and the script) into a command. Pure: the environment is
 * passed in (`SLUICE_URL`, `SLUICE_API_KEY`), flags win over it.
 */
export function parseCommand(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = {}): ParseResult {
  const words = leadingWords(argv);
  const wantsHelp = argv.includes('--help') || argv.includes('-h');
  if (words[0] === 'help') return { ok: true, command: { kind: 'help', text: helpText(words.slice(1)) } };
  if (words.length === 0) {
    return wantsHelp ? { ok: true, command: { kind: 'help', text: helpText() } } : { ok: false, error: 'missing command', help: helpText() };
  }
  const spec = COMMANDS.find((c) => c.path.every((w, i) => words[i] === w));
  if (!spec) {
    const isGroup = COMMANDS.some((c) => c.path.length > 1 && c.path[0] === words[0]);
    if (!isGroup) return { ok: false, error: `unknown command '${words[0]}'`, help: helpText() };
    if (words.length === 1 && wantsHelp) return { ok: true, command: { kind: 'help', text: helpText(words) } };
    const error = words.length === 1 ? `missing ${words[0]} command` : `unknown ${words[0]} command '${words[1]}'`;
    return { ok: false, error, help: helpText(words.slice(0, 1)) };
  }
  const help = helpText(spec.path);
  try {
    const options = Object.fromEntries(
      Object.entries({ ...GLOBAL_OPTIONS, ...spec.options }).map(([name, o]) => [name, o.short ? { type: o.type, short: o.short } : { type: o.type }]),
    );
    let parsed: { values: Values; positionals: string[] };
    try {
      parsed = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true }) as { values: Values; positionals: string[] };
    } catch (err) {
      throw new UsageError(err instanceof Error ? err.message : String(err));
    }
    const { values } = parsed;
    if (values.help === true) return { ok: true, command: { kind: 'help', text: help } };
    const args = parsed.positionals.slice(spec.path.length);
    if (args.length < spec.args.length) throw new UsageError(`missing ${spec.args.slice(args.length).join(' ')}`);
    if (!spec.variadic && args.length > spec.args.length) throw new UsageError(`unexpected argument '${args[spec.args.length]}'`);
    const action = spec.build(values, args);
    const key = str(values, 'key') ?? env.SLUICE_API_KEY;
    if (key === undefined || key.trim() === '') throw new UsageError('no API key: set SLUICE_API_KEY or pass --key');
    const url = normalizeUrl(str(values, 'url') ?? env.SLUICE_URL ?? DEFAULT_URL);
    return { ok: true, command: { kind: 'api', conn: { url, key: key.trim() }, json: values.json === true, action } };
  } catch (err) {
    if (err instanceof UsageError) return { ok: false, error: err.message, help };
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// API responses (the parts the CLI prints)
// ---------------------------------------------------------------------------------------------

interface ListJson<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
}

interface TenantJson {
  id: string;
  name: string;
  plan: string;
  status: string;
  limits: {
    requests_per_minute: number | null;
    tokens_per_minute: number | null;
    max_concurrent: number | null;
    monthly_budget_micros: number | null;
    allowed_models: string[] | null;
  };
  created_at: number;
}

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
  /** Only in the create response. */
  key?: string;
}

interface AdminModelJson {
  id: string;
  context_length: number;
  max_output_tokens: number;
  deployments: Array<{
    id: string;
    pool: string;
    provider: string;
    gguf_path: string | null;
    base_url: string | null;
    upstream_model: string | null;
    status: string;
    price: { input_micros_per_mtok: number; output_micros_per_mtok: number } | null;
  }>;
}

interface UsageSummaryJson {
  tenant_id: string | null;
  from: string;
  to: string;
  group_by: string | null;
  data: Array<{ group: string | null; requests: number; input_tokens: number; output_tokens: number; cost_micros: number }>;
}

interface AuditRowJson {
  seq: number;
  created_at: string;
  actor: string;
  tenant_id: string | null;
  action: string;
  target: string;
}

/** `GET /v1/admin/audit/verify`: 200 when intact, 409 when broken. */
interface AuditVerificationJson {
  object: 'audit_verification';
  ok: boolean;
  rows: number;
  head_seq?: number;
  head_hash?: string;
  first_bad_seq?: number;
  reason?: string;
}

interface ChatCompletionJson {
  id: string;
  model: string;
  choices: Array<{ message: { content: string | null }; finish_reason: string | null }>;
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

interface InvoiceJson {
  id: string;
  tenant_id: string;
  period: string;
  version: number;
  status: string;
  plan: string;
  plan_adjustment_bps: number;
  usage_rows: number;
  usage_micros: number;
  plan_adjustment_micros: number;
  adjustments_micros: number;
  total_micros: number;
  late_usage: { rows: number; micros: number; note: string | null };
  replaces_invoice_id: string | null;
  void_reason: string | null;
  lines?: Array<{ kind: string; model: string | null; key_id: string | null; variant: string | null; usage_period: string; late: boolean; description: string | null; requests: number; input_tokens: number; output_tokens: number; amount_micros: number }>;
}

interface DayCloseJson {
  day: string;
  tenant_id: string | null;
  workflow_id: string;
  run_id: string;
  result?: { status: string; created: number | null; tenants: number | null; error: string | null };
}

interface BillingRunJson {
  period: string;
  runs: Array<{
    tenant_id: string | null;
    workflow_id: string;
    run_id: string;
    result?:
      | { status: string; invoice_id: string | null; created: boolean | null; total_micros: number | null; error: string | null }
      | { period: string; invoices: Array<{ tenantId: string; invoiceId: string; created: boolean; totalMicros: number }>; failures: Array<{ tenantId: string; message: string }> };
  }>;
}

function printInvoice(i: InvoiceJson, out: (line: string) => void): void {
  out(`Invoice ${i.id}: tenant ${i.tenant_id}, ${i.period}, version ${i.version}, ${i.status}${i.void_reason ? ` (${i.void_reason})` : ''}`);
  out(formatTable([
    ['  usage', `${i.usage_rows} rows, ${formatMicros(i.usage_micros)}`],
    ['  plan', `${i.plan} (${i.plan_adjustment_bps} bps): ${formatMicros(i.plan_adjustment_micros)}`],
    ['  adjustments', formatMicros(i.adjustments_micros)],
    ['  total', formatMicros(i.total_micros)],
    ...(i.late_usage.note ? [['  late usage', i.late_usage.note]] : []),
  ]).join('\n'));
  if (!i.lines || i.lines.length === 0) return;
  out(formatTable([
    ['KIND', 'MODEL', 'KEY', 'VARIANT', 'USAGE PERIOD', 'REQUESTS', 'IN TOKENS', 'OUT TOKENS', 'AMOUNT'],
    ...i.lines.map((l) => [
      l.kind, l.model ?? (l.description ?? '-'), l.key_id ?? '-', l.variant ?? '-', `${l.usage_period}${l.late ? ' (late)' : ''}`,
      String(l.requests), String(l.input_tokens), String(l.output_tokens), formatMicros(l.amount_micros),
    ]),
  ]).join('\n'));
}

interface ApiErrorJson {
  error: { message: string; type?: string | null; param?: string | null; code?: string | null };
}

// ---------------------------------------------------------------------------------------------
// Handlers: the request each action makes and how its response prints
// ---------------------------------------------------------------------------------------------

/** One HTTP call to the API. */
export interface ApiRequest {
  method: 'GET' | 'POST' | 'PATCH';
  /** Path under the base URL, starting with `/v1/`. */
  path: string;
  query?: Readonly<Record<string, string | number | null | undefined>>;
  body?: unknown;
}

interface Handler<A extends Action> {
  request(action: A): ApiRequest;
  /** Prints a successful response. */
  render(body: unknown, action: A, deps: CliDeps): void;
  /** Non-2xx statuses that carry a result rather than an error (audit verify: 409 = broken chain). */
  resultStatuses?: readonly number[];
  /** Exit code for a result, also with `--json`. @default 0 */
  exitCode?(body: unknown): number;
  /** A streamed download: a 2xx body goes to this file as it arrives instead of being parsed. */
  download?(action: A): string;
}

type Handlers = { [K in Action['kind']]: Handler<Extract<Action, { kind: K }>> };

const seg = encodeURIComponent;

const HANDLERS: Handlers = {
  'tenants.create': {
    request: (a) => ({ method: 'POST', path: '/v1/admin/tenants', body: a.body }),
    render: (body, _a, { out }) => printTenant(body as TenantJson, 'Created tenant', out),
  },
  'tenants.list': {
    request: (a) => ({ method: 'GET', path: '/v1/admin/tenants', query: { limit: a.limit, after: a.after } }),
    render(body, _a, { out }) {
      const list = body as ListJson<TenantJson>;
      printList(list, out, 'No tenants.', ['ID', 'NAME', 'PLAN', 'STATUS', 'RPM', 'TPM', 'CONCURRENT', 'BUDGET/MONTH', 'MODELS', 'CREATED'], (t) => [
        t.id, t.name, t.plan, t.status,
        limit(t.limits.requests_per_minute), limit(t.limits.tokens_per_minute), limit(t.limits.max_concurrent),
        t.limits.monthly_budget_micros === null ? 'unlimited' : formatMicros(t.limits.monthly_budget_micros),
        t.limits.allowed_models === null ? 'all' : t.limits.allowed_models.join(','),
        formatTime(t.created_at),
      ]);
      const last = list.data.at(-1);
      if (list.has_more && last) out(`More tenants: --after ${last.id}`);
    },
  },
  'tenants.get': {
    request: (a) => ({ method: 'GET', path: `/v1/admin/tenants/${seg(a.id)}` }),
    render: (body, _a, { out }) => printTenant(body as TenantJson, 'Tenant', out),
  },
  'tenants.erase': {
    request: (a) => ({ method: 'POST', path: `/v1/admin/tenants/${seg(a.id)}/erase`, body: { confirm: true } }),
    render(body, _a, { out }) {
      const t = body as TenantJson & { erased?: Record<string, number> };
      out(`Erased tenant ${t.id} (${t.name}); it is now ${t.status}.`);
      for (const [what, n] of Object.entries(t.erased ?? {})) out(`  ${what.replaceAll('_', ' ')}: ${n}`);
    },
  },
  'tenants.update': {
    request: (a) => ({ method: 'PATCH', path: `/v1/admin/tenants/${seg(a.id)}`, body: a.body }),
    render: (body, _a, { out }) => printTenant(body as TenantJson, 'Updated tenant', out),
  },
  'keys.create': {
    request: (a) => ({ method: 'POST', path: `/v1/admin/tenants/${seg(a.tenantId)}/keys`, body: a.body }),
    render(body, _a, { out }) {
      const k = body as KeyJson;
      out(`Created key ${k.id} for tenant ${k.tenant_id}: role ${k.role}, scopes ${k.scopes === null ? 'all of the role' : k.scopes.join(',')}, expires ${k.expires_at === null ? 'never' : formatTime(k.expires_at)}.`);
      out('');
      out(`    ${k.key ?? '(the API returned no secret)'}`);
      out('');
      out('This secret is shown only once and cannot be recovered: store it now.');
    },
  },
  'keys.list': {
    request: (a) => ({ method: 'GET', path: `/v1/admin/tenants/${seg(a.tenantId)}/keys`, query: { limit: a.limit, after: a.after } }),
    render(body, _a, { out }) {
      const list = body as ListJson<KeyJson>;
      printList(list, out, 'No keys.', ['ID', 'NAME', 'PREFIX', 'ROLE', 'SCOPES', 'STATUS', 'EXPIRES', 'LAST USED', 'CREATED'], (k) => [
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
      out('');
      out(`    ${k.key ?? '(the API returned no secret)'}`);
      out('');
      out('This secret is shown only once and cannot be recovered: store it now.');
    },
  },
  'models.list': {
    request: () => ({ method: 'GET', path: '/v1/admin/models' }),
    render(body, _a, { out }) {
      printModels((body as ListJson<AdminModelJson>).data, out, 'No models.');
    },
  },
  'models.add': {
    request: (a) => ({ method: 'POST', path: '/v1/admin/models', body: a.body }),
    render(body, _a, { out }) {
      const m = body as AdminModelJson;
      out(`Added model ${m.id}.`);
      printModels([m], out, '');
    },
  },
  usage: {
    request: (a) => ({ method: 'GET', path: '/v1/admin/usage', query: { ...a.query } }),
    render(body, _a, { out }) {
      const u = body as UsageSummaryJson;
      out(`Usage of ${u.tenant_id === null ? 'all tenants' : `tenant ${u.tenant_id}`} from ${formatTime(u.from)} to ${formatTime(u.to)}${u.group_by ? `, by ${u.group_by}` : ''}:`);
      if (u.data.length === 0) {
        out('No usage in this period.');
        return;
      }
      const row = (r: UsageSummaryJson['data'][number]) => [String(r.requests), String(r.input_tokens), String(r.output_tokens), formatMicros(r.cost_micros)];
      const head = ['REQUESTS', 'INPUT TOKENS', 'OUTPUT TOKENS', 'COST'];
      if (u.group_by === null) {
        out(formatTable([head, ...u.data.map(row)]).join('\n'));
        return;
      }
      const rows = [[u.group_by.toUpperCase(), ...head], ...u.data.map((r) => [r.group ?? '-', ...row(r)])];
      if (u.data.length > 1) {
        const sum = (f: 'requests' | 'input_tokens' | 'output_tokens' | 'cost_micros') => u.data.reduce((acc, r) => acc + BigInt(r[f]), 0n);
        rows.push(['TOTAL', String(sum('requests')), String(sum('input_tokens')), String(sum('output_tokens')), formatMicros(sum('cost_micros'))]);
      }
      out(formatTable(rows).join('\n'));
    },
  },
  'audit.list': {
    request: (a) => ({ method: 'GET', path: '/v1/admin/audit', query: { limit: a.limit, before: a.before } }),
    render(body, _a, { out }) {
      const list = body as ListJson<AuditRowJson>;
      printList(list, out, 'No audit entries.', ['SEQ', 'TIME', 'ACTOR', 'TENANT', 'ACTION', 'TARGET'], (r) => [
        String(r.seq), formatTime(r.created_at), r.actor, r.tenant_id ?? '-', r.action, r.target,
      ]);
      const last = list.data.at(-1);
      if (list.has_more && last) out(`Older entries: --before ${last.seq}`);
    },
  },
  'audit.verify': {
    request: () => ({ method: 'GET', path: '/v1/admin/audit/verify' }),
    resultStatuses: [409],
    exitCode: (body) => ((body as AuditVerificationJson).ok ? 0 : 1),
    render(body, _a, { out }) {
      const v = body as AuditVerificationJson;
      if (v.ok) out(`Audit chain OK: ${v.rows} entries verified, head at seq ${v.head_seq ?? '?'} (hash ${(v.head_hash ?? '?').slice(0, 16)}…).`);
      else out(`Audit chain BROKEN at seq ${v.first_bad_seq ?? '?'}: ${v.reason ?? 'no reason given'} (${v.rows} entries verified before it).`);
    },
  },
  'billing.run': {
    request: (a) => ({ method: 'POST', path: '/v1/admin/billing/runs', body: { period: a.period, ...(a.tenantId ? { tenant_id: a.tenantId } : {}), wait: a.wait } }),
    exitCode: (body) => (JSON.stringify(body).includes('"status":"failed"') || JSON.stringify(body).includes('"failures":[{') ? 1 : 0),
    render(body, a, { out }) {
      const r = body as BillingRunJson;
      for (const run of r.runs) {
        out(`Billing ${r.period} ${run.tenant_id === null ? 'for every billable tenant' : `for tenant ${run.tenant_id}`}: workflow ${run.workflow_id} (run ${run.run_id})`);
        const res = run.result;
        if (!a.wait || !res) continue;
        if ('invoices' in res) {
          printList({ object: 'list', data: res.invoices, has_more: false }, out, 'No tenants to bill.', ['TENANT', 'INVOICE', 'NEW', 'TOTAL'], (i) => [i.tenantId, i.invoiceId, i.created ? 'yes' : 'no', formatMicros(i.totalMicros)]);
          for (const f of res.failures) out(`FAILED ${f.tenantId}: ${f.message}`);
        } else if (res.status === 'succeeded') out(`  invoice ${res.invoice_id} (${res.created ? 'new' : 'existing'}), total ${formatMicros(res.total_micros ?? 0)}, reconciled with the ledger`);
        else out(`  FAILED: ${res.error ?? 'unknown error'}`);
      }
    },
  },
  'billing.closeDay': {
    request: (a) => ({ method: 'POST', path: '/v1/admin/billing/runs', body: { day: a.day, ...(a.tenantId ? { tenant_id: a.tenantId } : {}), wait: a.wait } }),
    exitCode: (body) => ((body as DayCloseJson).result?.status === 'failed' ? 1 : 0),
    render(body, a, { out }) {
      const r = body as DayCloseJson;
      out(`Day close ${r.day} ${r.tenant_id === null ? 'for every tenant' : `for tenant ${r.tenant_id}`}: workflow ${r.workflow_id} (run ${r.run_id})`);
      if (!a.wait || !r.result) return;
      if (r.result.status === 'succeeded') out(`  ${r.result.tenants ?? 0} tenant(s) closed (${r.result.created ?? 0} new), reconciled with the ledger`);
      else out(`  FAILED: ${r.result.error ?? 'unknown error'}`);
    },
  },
  'invoices.list': {
    request: (a) => ({ method: 'GET', path: '/v1/admin/invoices', query: { period: a.period, tenant_id: a.tenantId, status: a.status, limit: a.limit, after: a.after } }),
    render(body, _a, { out }) {
      const list = body as ListJson<InvoiceJson>;
      printList(list, out, 'No invoices.', ['ID', 'TENANT', 'PERIOD', 'VERSION', 'STATUS', 'ROWS', 'TOTAL', 'LATE ROWS'], (i) => [
        i.id, i.tenant_id, i.period, String(i.version), i.status, String(i.usage_rows), formatMicros(i.total_micros), String(i.late_usage.rows),
      ]);
      const last = list.data.at(-1);
      if (list.has_more && last) out(`More invoices: --after ${last.id}`);
    },
  },
  'invoices.get': {
    request: (a) => ({ method: 'GET', path: `/v1/admin/invoices/${seg(a.id)}` }),
    render: (body, _a, { out }) => printInvoice(body as InvoiceJson, out),
  },
  'invoices.void': {
    request: (a) => ({ method: 'POST', path: `/v1/admin/invoices/${seg(a.id)}/void`, body: { reason: a.reason } }),
    render: (body, _a, { out }) => out(`Voided invoice ${(body as InvoiceJson).id}. Re-issue it with: sluice invoices reissue ${(body as InvoiceJson).id}`),
  },
  'invoices.reissue': {
    request: (a) => ({ method: 'POST', path: `/v1/admin/invoices/${seg(a.id)}/reissue` }),
    render: (body, _a, { out }) => printInvoice(body as InvoiceJson, out),
  },
  export: {
    request: (a) => ({ method: 'GET', path: `/v1/admin/${a.what}/export`, query: { period: a.period, tenant_id: a.tenantId, format: a.format } }),
    download: (a) => a.output,
    render: () => undefined,
  },
  batch: {
    // Several calls (see batch-cli.ts); `request` names the first one, for requestOf.
    request: (a) => ({ method: a.op.op === 'cancel' || a.op.op === 'submit' ? 'POST' : 'GET', path: a.op.op === 'submit' ? '/v1/files' : a.op.op === 'list' ? '/v1/batches' : `/v1/batches/${seg(a.op.id)}` }),
    render: () => undefined,
  },
  chat: {
    request: (a) => ({ method: 'POST', path: '/v1/chat/completions', body: a.body }),
    render(body, _a, { out, err }) {
      const c = body as ChatCompletionJson;
      const choice = c.choices[0];
      out(choice?.message.content ?? '');
      const u = c.usage;
      const tokens = u ? `${u.prompt_tokens} prompt + ${u.completion_tokens} completion = ${u.total_tokens} tokens` : 'no usage reported';
      err(`[${c.model} · ${c.id} · ${tokens} · finish ${choice?.finish_reason ?? '?'}]`);
    },
  },
};

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

function urlOf(conn: Connection, req: ApiRequest): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(req.query ?? {})) if (v !== null && v !== undefined) params.set(k, String(v));
  const qs = params.toString();
  return `${conn.url}${req.path}${qs ? `?${qs}` : ''}`;
}

function isApiError(body: unknown): body is ApiErrorJson {
  if (typeof body !== 'object' || body === null || !('error' in body)) return false;
  const e = (body as { error: unknown }).error;
  return typeof e === 'object' && e !== null && typeof (e as { message?: unknown }).message === 'string';
}

/** The request the action makes; exported for tests and future commands. */
export function requestOf(action: Action): ApiRequest {
  return (HANDLERS[action.kind] as Handler<Action>).request(action);
}

/** Executes a parsed command and prints its result; returns the process exit code. */
export async function runCommand(cmd: Command, deps: CliDeps): Promise<number> {
  if (cmd.kind === 'help') {
    deps.out(cmd.text);
    return 0;
  }
  if (cmd.action.kind === 'batch') return runBatchOp(cmd.action.op, cmd.conn, cmd.json, deps);
  const handler = HANDLERS[cmd.action.kind] as Handler<Action>;
  const req = handler.request(cmd.action);
  const url = urlOf(cmd.conn, req);
  const headers: Record<string, string> = { authorization: `Bearer ${cmd.conn.key}`, accept: 'application/json', 'user-agent': 'sluice-cli' };
  if (req.body !== undefined) headers['content-type'] = 'application/json';

  let res: Response;
  let text: string;
  try {
    res = await deps.fetch(url, { method: req.method, headers, body: req.body === undefined ? undefined : JSON.stringify(req.body) });
    if (handler.download && res.ok && res.body) {
      const file = handler.download(cmd.action);
      const counter = createWriteStream(file);
      await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), counter);
      deps.err(`sluice: wrote ${counter.bytesWritten} bytes to ${file}`);
      return 0;
    }
    text = await res.text();
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
    deps.err(`sluice: cannot reach the API at ${cmd.conn.url} (${err instanceof Error ? err.message : String(err)}${cause})`);
    return 1;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    deps.err(`sluice: ${req.method} ${req.path} answered HTTP ${res.status} with a non-JSON body: ${text.slice(0, 200)}`);
    return 1;
  }

  const isResult = res.ok || (handler.resultStatuses?.includes(res.status) === true && !isApiError(body));
  if (!isResult) {
    if (isApiError(body)) {
      const e = body.error;
      const detail = [`HTTP ${res.status}`, e.type, e.code ? `code ${e.code}` : null, e.param ? `param ${e.param}` : null].filter(Boolean).join(', ');
      deps.err(`sluice: error: ${e.message} (${detail})`);
    } else {
      deps.err(`sluice: ${req.method} ${req.path} failed with HTTP ${res.status}: ${text.slice(0, 200)}`);
    }
    const retryAfter = res.headers.get('retry-after');
    if (retryAfter !== null) deps.err(`sluice: retry after ${retryAfter} s`);
    return 1;
  }

  if (cmd.json) deps.out(JSON.stringify(body, null, 2));
  else handler.render(body, cmd.action, deps);
  return handler.exitCode?.(body) ?? 0;
}

/** Parses and runs; a usage error prints the message and help to stderr and returns 2. */
export async function cli(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, deps: CliDeps): Promise<number> {
  const parsed = parseCommand(argv, env);
  if (!parsed.ok) {
    deps.err(`sluice: ${parsed.error}`);
    deps.err('');
    deps.err(parsed.help);
    return 2;
  }
  return runCommand(parsed.command, deps);
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

/** Left-aligned columns separated by `gap` spaces; the last column is not padded. */
function formatTable(rows: readonly (readonly string[])[], gap = 2): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd((widths[i] ?? 0) + gap))).join('').trimEnd());
}

function printList<T>(list: ListJson<T>, out: (line: string) => void, empty: string, head: string[], row: (item: T) => string[]): void {
  if (list.data.length === 0) out(empty);
  else out(formatTable([head, ...list.data.map(row)]).join('\n'));
}

function printTenant(t: TenantJson, title: string, out: (line: string) => void): void {
  out(`${title} ${t.id}`);
  out(
    formatTable([
      ['  name', t.name],
      ['  plan', t.plan],
      ['  status', t.status],
      ['  requests/min', limit(t.limits.requests_per_minute)],
      ['  tokens/min', limit(t.limits.tokens_per_minute)],
      ['  max concurrent', limit(t.limits.max_concurrent)],
      ['  monthly budget', t.limits.monthly_budget_micros === null ? 'unlimited' : formatMicros(t.limits.monthly_budget_micros)],
      ['  allowed models', t.limits.allowed_models === null ? 'all' : t.limits.allowed_models.join(', ')],
      ['  created', formatTime(t.created_at)],
    ]).join('\n'),
  );
}

function printModels(models: readonly AdminModelJson[], out: (line: string) => void, empty: string): void {
  if (models.length === 0) {
    if (empty) out(empty);
    return;
  }
  const rows = [['MODEL', 'CONTEXT', 'MAX OUT', 'DEPLOYMENT', 'POOL', 'PROVIDER', 'STATUS', 'IN $/MTOK', 'OUT $/MTOK', 'TARGET']];
  for (const m of models) {
    if (m.deployments.length === 0) rows.push([m.id, String(m.context_length), String(m.max_output_tokens), '-', '-', '-', '-', '-', '-', '-']);
    for (const d of m.deployments) {
      const target = d.gguf_path ?? `${d.base_url ?? '?'} (${d.upstream_model ?? '?'})`;
      rows.push([
        m.id, String(m.context_length), String(m.max_output_tokens), d.id, d.pool, d.provider, d.status,
        d.price ? formatMicros(d.price.input_micros_per_mtok) : '-', d.price ? formatMicros(d.price.output_micros_per_mtok) : '-', target,
      ]);
    }
  }
  out(formatTable(rows).join('\n'));
}

function limit(n: number | null): string {
  return n === null ? 'unlimited' : String(n);
}

function keyStatus(k: KeyJson): string {
  if (k.revoked_at !== null) return 'revoked';
  if (k.expires_at !== null && k.expires_at * 1000 <= Date.now()) return 'expired';
  return 'active';
}

/** Integer micro-USD as dollars, exact (no floats): 1500000 → `$1.50`, 1234 → `$0.001234`. */
export function formatMicros(micros: number | bigint | string): string {
  const n = BigInt(micros);
  const sign = n < 0n ? '-' : '';
  const abs = n < 0n ? -n : n;
  const fraction = (abs % 1_000_000n).toString().padStart(6, '0').replace(/0+$/, '').padEnd(2, '0');
  return `${sign}$${abs / 1_000_000n}.${fraction}`;
}

/** Unix seconds or an ISO string as `YYYY-MM-DD HH:MM:SSZ` (UTC). */
function formatTime(t: number | string): string {
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, 'Z');
}

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  // `sluice … | head` closes the pipe early; that is not an error of the command.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
  }
  cli(process.argv.slice(2), process.env, {
    fetch: globalThis.fetch,
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    progress: process.stderr.isTTY ? (line) => process.stderr.write(`\r\x1b[2K${line}`) : null,
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`sluice: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
