/** `sluice tenants create|list|get|update|erase`. */
import { limitOpt, listOpt, PAGE_OPTIONS, pageOf, requiredStr, str, UsageError, type CommandSpec, type OptionSpec, type Values } from './args.js';
import { formatLimit, formatMicros, formatTable, formatTime, printList, type Out } from './format.js';
import { seg, type Handlers, type ListJson } from './http.js';

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

export type TenantAction =
  | { kind: 'tenants.create'; body: TenantCreateBody }
  | { kind: 'tenants.list'; limit: number | null; after: string | null }
  | { kind: 'tenants.get'; id: string }
  | { kind: 'tenants.erase'; id: string }
  | { kind: 'tenants.update'; id: string; body: TenantUpdateBody };

const LIMIT_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  plan: { type: 'string', arg: 'P', help: 'plan name (default standard)' },
  rpm: { type: 'string', arg: 'N', help: "requests per minute ('unlimited' = no limit)" },
  tpm: { type: 'string', arg: 'N', help: "tokens per minute ('unlimited' = no limit)" },
  'max-concurrent': { type: 'string', arg: 'N', help: "requests in flight at once ('unlimited' = no limit)" },
  'budget-micros': { type: 'string', arg: 'N', help: "monthly budget in micro-USD ('unlimited' = no limit)" },
  'allowed-models': { type: 'string', arg: 'a,b', help: "models the tenant may use ('*' = all)" },
};

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

export const tenantCommands: readonly CommandSpec<TenantAction>[] = [
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
];

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

function printTenant(t: TenantJson, title: string, out: Out): void {
  out(`${title} ${t.id}`);
  out(
    formatTable([
      ['  name', t.name],
      ['  plan', t.plan],
      ['  status', t.status],
      ['  requests/min', formatLimit(t.limits.requests_per_minute)],
      ['  tokens/min', formatLimit(t.limits.tokens_per_minute)],
      ['  max concurrent', formatLimit(t.limits.max_concurrent)],
      ['  monthly budget', t.limits.monthly_budget_micros === null ? 'unlimited' : formatMicros(t.limits.monthly_budget_micros)],
      ['  allowed models', t.limits.allowed_models === null ? 'all' : t.limits.allowed_models.join(', ')],
      ['  created', formatTime(t.created_at)],
    ]).join('\n'),
  );
}

export const tenantHandlers: Handlers<TenantAction> = {
  'tenants.create': {
    request: (a) => ({ method: 'POST', path: '/v1/admin/tenants', body: a.body }),
    render: (body, _a, { out }) => printTenant(body as TenantJson, 'Created tenant', out),
  },
  'tenants.list': {
    request: (a) => ({ method: 'GET', path: '/v1/admin/tenants', query: { limit: a.limit, after: a.after } }),
    render(body, _a, { out }) {
      const list = body as ListJson<TenantJson>;
      printList(list.data, out, 'No tenants.', ['ID', 'NAME', 'PLAN', 'STATUS', 'RPM', 'TPM', 'CONCURRENT', 'BUDGET/MONTH', 'MODELS', 'CREATED'], (t) => [
        t.id, t.name, t.plan, t.status,
        formatLimit(t.limits.requests_per_minute), formatLimit(t.limits.tokens_per_minute), formatLimit(t.limits.max_concurrent),
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
};
