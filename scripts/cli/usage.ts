/** `sluice usage` (totals over a time range) and `sluice usage export`. */
import { USAGE_GROUPS, type UsageGroup } from '../../domain/usage.js';
import { str, timeOpt, UsageError, type CommandSpec } from './args.js';
import { exportCommand, type ExportAction } from './export.js';
import { formatMicros, formatTable, formatTime } from './format.js';
import type { Handlers } from './http.js';

/** Query of `GET /v1/admin/usage`. */
export interface UsageQuery {
  from?: string;
  to?: string;
  group_by?: UsageGroup;
  tenant_id?: string;
}

export type UsageAction = { kind: 'usage'; query: UsageQuery };

export const usageCommands: readonly CommandSpec<UsageAction | ExportAction>[] = [
  exportCommand('usage', "download a month's raw usage ledger (streamed)"),
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
];

interface UsageSummaryJson {
  tenant_id: string | null;
  from: string;
  to: string;
  group_by: string | null;
  data: Array<{ group: string | null; requests: number; input_tokens: number; output_tokens: number; cost_micros: number }>;
}

export const usageHandlers: Handlers<UsageAction> = {
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
};
