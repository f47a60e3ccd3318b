/** `sluice usage export` and `sluice invoices export`: one streamed download, to a file. */
import { periodOpt, requiredStr, str, UsageError, type CommandSpec, type OptionSpec } from './args.js';
import type { Handlers } from './http.js';

export type ExportAction = { kind: 'export'; what: 'usage' | 'invoices'; period: string; tenantId: string | null; format: 'csv' | 'json'; output: string };

const EXPORT_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  period: { type: 'string', arg: 'YYYY-MM', help: 'the month (required)' },
  tenant: { type: 'string', arg: 'ID', help: 'one tenant (super admin; others always get their own)' },
  format: { type: 'string', arg: 'F', help: 'csv (default) or json' },
  output: { type: 'string', short: 'o', arg: 'FILE', help: 'file to write (required)' },
};

/** The `export` command of the `usage` or `invoices` group. */
export function exportCommand(what: 'usage' | 'invoices', summary: string): CommandSpec<ExportAction> {
  return {
    path: [what, 'export'],
    synopsis: '--period YYYY-MM [--tenant ID] [--format csv|json] -o FILE',
    summary,
    options: EXPORT_OPTIONS,
    args: [],
    build(v) {
      const format = str(v, 'format') ?? 'csv';
      if (format !== 'csv' && format !== 'json') throw new UsageError(`--format must be csv or json, got '${format}'`);
      return { kind: 'export', what, period: periodOpt(v), tenantId: str(v, 'tenant') ?? null, format, output: requiredStr(v, 'output') };
    },
  };
}

export const exportHandlers: Handlers<ExportAction> = {
  export: {
    request: (a) => ({ method: 'GET', path: `/v1/admin/${a.what}/export`, query: { period: a.period, tenant_id: a.tenantId, format: a.format } }),
    download: (a) => a.output,
    render: () => undefined,
  },
};
