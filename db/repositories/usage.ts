/** Reads of the usage ledger. Writes happen only in `quota.settle` (exactly once per request and step). */
import { sql } from 'kysely';
import type { UsageGroup } from '../../domain/usage.js';
import type { Db } from '../database.js';

export { USAGE_GROUPS, type UsageGroup } from '../../domain/usage.js';

const GROUP_EXPR: Record<UsageGroup, ReturnType<typeof sql<string>>> = {
  day: sql<string>`to_char(created_at at time zone 'UTC', 'YYYY-MM-DD')`,
  model: sql<string>`model`,
  key: sql<string>`key_id`,
  variant: sql<string>`coalesce(variant, 'none')`,
  deployment: sql<string>`deployment_id`,
  kind: sql<string>`kind`,
  // A batch line's request ID is `batch_req_<batch suffix>_<line>` (contracts/): the
  // batch ID is derived from it; everything else groups as 'none'.
  batch: sql<string>`case when kind = 'batch' then regexp_replace(request_id, '^batch_req_(.+)_[0-9]+$', 'batch_\\1') else 'none' end`,
};

export interface UsageSummaryRow {
  group: string | null;
  requests: number;
  input_tokens: number;
  output_tokens: number;
  cost_micros: number;
}

/** Totals over [from, to) for one tenant (or all when null), optionally grouped. */
export async function summarizeUsage(
  db: Db,
  opts: { tenantId: string | null; keyId: string | null; from: Date; to: Date; groupBy: UsageGroup | null },
): Promise<UsageSummaryRow[]> {
  const groupExpr = opts.groupBy === null ? sql<string | null>`null` : GROUP_EXPR[opts.groupBy];
  let q = db
    .selectFrom('usage')
    .select([
      groupExpr.as('group'),
      sql<number>`count(*)::bigint`.as('requests'),
      sql<number>`coalesce(sum(input_tokens), 0)::bigint`.as('input_tokens'),
      sql<number>`coalesce(sum(output_tokens), 0)::bigint`.as('output_tokens'),
      sql<number>`coalesce(sum(cost_micros), 0)::bigint`.as('cost_micros'),
    ])
    .where('created_at', '>=', opts.from)
    .where('created_at', '<', opts.to)
    .where('billable', '=', true);
  if (opts.tenantId !== null) q = q.where('tenant_id', '=', opts.tenantId);
  if (opts.keyId !== null) q = q.where('key_id', '=', opts.keyId);
  if (opts.groupBy !== null) q = q.groupBy(sql`1`).orderBy(sql`1`);
  return q.execute();
}
