/** `sluice billing run|close-day`: start the billing workflows, and by default wait for them. */
import { dayOpt, periodOpt, str, type CommandSpec } from './args.js';
import { formatMicros, printList } from './format.js';
import type { Handlers } from './http.js';

export type BillingAction =
  | { kind: 'billing.run'; period: string; tenantId: string | null; wait: boolean }
  | { kind: 'billing.closeDay'; day: string; tenantId: string | null; wait: boolean };

export const billingCommands: readonly CommandSpec<BillingAction>[] = [
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
    summary: "close a UTC day: each tenant's billable totals for it, written once and checked against the ledger",
    options: {
      day: { type: 'string', arg: 'YYYY-MM-DD', help: 'the day to close (required; must have ended)' },
      tenant: { type: 'string', arg: 'ID', help: 'one tenant (default: every tenant with usage that day; finance keys: their own)' },
      'no-wait': { type: 'boolean', help: 'start the workflow and print its ID without waiting' },
    },
    args: [],
    build: (v) => ({ kind: 'billing.closeDay', day: dayOpt(v), tenantId: str(v, 'tenant') ?? null, wait: v['no-wait'] !== true }),
  },
];

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

export const billingHandlers: Handlers<BillingAction> = {
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
          printList(res.invoices, out, 'No tenants to bill.', ['TENANT', 'INVOICE', 'NEW', 'TOTAL'], (i) => [i.tenantId, i.invoiceId, i.created ? 'yes' : 'no', formatMicros(i.totalMicros)]);
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
};
