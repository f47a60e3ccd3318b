/** `sluice invoices list|get|void|reissue|export`. */
import { PAGE_OPTIONS, pageOf, periodOpt, requiredStr, str, type CommandSpec } from './args.js';
import { exportCommand, type ExportAction } from './export.js';
import { formatMicros, formatTable, printList, type Out } from './format.js';
import { seg, type Handlers, type ListJson } from './http.js';

export type InvoiceAction =
  | { kind: 'invoices.list'; period: string | null; tenantId: string | null; status: string | null; limit: number | null; after: string | null }
  | { kind: 'invoices.get'; id: string }
  | { kind: 'invoices.void'; id: string; reason: string }
  | { kind: 'invoices.reissue'; id: string };

export const invoiceCommands: readonly CommandSpec<InvoiceAction | ExportAction>[] = [
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
    build: (v) => ({ kind: 'invoices.list', period: periodOpt(v, true) ?? null, tenantId: str(v, 'tenant') ?? null, status: str(v, 'status') ?? null, ...pageOf(v) }),
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
  exportCommand('invoices', "download a month's invoice lines (streamed)"),
];

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

function printInvoice(i: InvoiceJson, out: Out): void {
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

export const invoiceHandlers: Handlers<InvoiceAction> = {
  'invoices.list': {
    request: (a) => ({ method: 'GET', path: '/v1/admin/invoices', query: { period: a.period, tenant_id: a.tenantId, status: a.status, limit: a.limit, after: a.after } }),
    render(body, _a, { out }) {
      const list = body as ListJson<InvoiceJson>;
      printList(list.data, out, 'No invoices.', ['ID', 'TENANT', 'PERIOD', 'VERSION', 'STATUS', 'ROWS', 'TOTAL', 'LATE ROWS'], (i) => [
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
};
