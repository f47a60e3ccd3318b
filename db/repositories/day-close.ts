/**
 * Day close: a tenant's billable ledger totals for one UTC day, written once when the day is
 * closed, and the check that the ledger still agrees with them. Usage rows are dated when they are
 * settled, so a row dated in a closed day that the close did not count was written behind the
 * ledger's back (or across the midnight of its own settle): the check finds it.
 */
import { sql } from 'kysely';
import type { Db } from '../database.js';
import { dayRange } from '../../domain/billing-calendar.js';

export interface DayTotals {
  tenant_id: string;
  day: string;
  rows: number;
  input_tokens: number;
  output_tokens: number;
  cost_micros: number;
}

export interface DayClose extends DayTotals {
  workflow_id: string;
  closed_at: Date;
}

/**
 * Closes `day` for every tenant with billable usage in it (or one tenant): writes each tenant's
 * totals unless that tenant's day is already closed. One statement, idempotent; returns how many
 * closes it wrote and how many tenants the day has in all.
 */
export async function closeDay(db: Db, input: { day: string; tenantId: string | null; workflowId: string }): Promise<{ created: number; tenants: number }> {
  const { start, end } = dayRange(input.day);
  const tenant = input.tenantId === null ? sql`` : sql`and tenant_id = ${input.tenantId}`;
  const written = await sql<{ tenant_id: string }>`
    insert into day_closes (tenant_id, day, rows, input_tokens, output_tokens, cost_micros, workflow_id)
    select tenant_id, ${input.day}::date, count(*), sum(input_tokens), sum(output_tokens), sum(cost_micros), ${input.workflowId}
    from usage
    where billable and created_at >= ${start} and created_at < ${end} ${tenant}
    group by tenant_id
    on conflict (tenant_id, day) do nothing
    returning tenant_id`.execute(db);
  const closed = await db.selectFrom('day_closes').select((eb) => eb.fn.countAll<number>().as('n'))
    .where('day', '=', sql<Date>`${input.day}::date`)
    .$if(input.tenantId !== null, (q) => q.where('tenant_id', '=', input.tenantId as string))
    .executeTakeFirstOrThrow();
  return { created: written.rows.length, tenants: Number(closed.n) };
}

/** The ledger's billable totals for `day`, per tenant, as they are now. */
async function ledgerTotals(db: Db, day: string, tenantId: string | null): Promise<Map<string, DayTotals>> {
  const { start, end } = dayRange(day);
  const tenant = tenantId === null ? sql`` : sql`and tenant_id = ${tenantId}`;
  const rows = await sql<DayTotals>`
    select tenant_id, ${day} as day, count(*)::bigint as rows, sum(input_tokens)::bigint as input_tokens,
           sum(output_tokens)::bigint as output_tokens, sum(cost_micros)::bigint as cost_micros
    from usage where billable and created_at >= ${start} and created_at < ${end} ${tenant}
    group by tenant_id`.execute(db);
  return new Map(rows.rows.map((r) => [r.tenant_id, r]));
}

export async function listDayCloses(db: Db, opts: { tenantId: string | null; from: string; to: string }): Promise<DayClose[]> {
  return db
    .selectFrom('day_closes')
    .select(['tenant_id', sql<string>`to_char(day, 'YYYY-MM-DD')`.as('day'), 'rows', 'input_tokens', 'output_tokens', 'cost_micros', 'workflow_id', 'closed_at'])
    .where('day', '>=', sql<Date>`${opts.from}::date`)
    .where('day', '<', sql<Date>`${opts.to}::date`)
    .$if(opts.tenantId !== null, (q) => q.where('tenant_id', '=', opts.tenantId as string))
    .orderBy('day')
    .orderBy('tenant_id')
    .execute();
}

/**
 * Compares `day`'s closes with the ledger now: every tenant with billable usage that day must have
 * a close, and each close must equal the ledger's totals. Returns the problems found (none = ok).
 */
export async function reconcileDay(db: Db, day: string, tenantId: string | null): Promise<{ ok: boolean; problems: string[]; tenants: number }> {
  const ledger = await ledgerTotals(db, day, tenantId);
  const closes = await listDayCloses(db, { tenantId, from: day, to: dayRange(day).end.toISOString().slice(0, 10) });
  const problems: string[] = [];
  const fields = ['rows', 'input_tokens', 'output_tokens', 'cost_micros'] as const;
  for (const close of closes) {
    const now = ledger.get(close.tenant_id);
    for (const f of fields) {
      const actual = now?.[f] ?? 0;
      if (actual !== close[f]) problems.push(`tenant ${close.tenant_id}: ${f} closed at ${close[f]}, ledger has ${actual}`);
    }
    ledger.delete(close.tenant_id);
  }
  for (const [t, totals] of ledger) problems.push(`tenant ${t}: ${totals.rows} billable rows (${totals.cost_micros} micro-USD) dated ${day} but the day has no close`);
  return { ok: problems.length === 0, problems, tenants: closes.length };
}
