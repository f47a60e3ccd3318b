/**
 * Invoices: closing a tenant's period into one invoice (claims, lines, totals in one
 * transaction), reconciling an invoice against the live ledger, voiding, listing, and streaming
 * exports a page at a time by key (bounded memory however many rows, no transaction held while a client reads).
 */
import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../database.js';
import type { Invoice, InvoiceLine } from '../tables/index.js';
import { newId } from '../../domain/ids.js';
import { planRateAt } from './billing.js';
import { periodRange } from '../../domain/billing-calendar.js';
import type { SlaMeasurement } from '../../contracts/billing.js';
import { slaCreditProblems, writeSlaCredit } from './slos.js';

export interface IssueInput {
  tenantId: string;
  period: string;
  workflowId: string;
  closedAt: Date;
  /** The period's SLA measurement (`measureSla`): an earned credit is written as an adjustment line. @default null */
  sla?: SlaMeasurement | null;
}

export type IssueResult =
  | { ok: true; invoice: Invoice; created: boolean }
  | { ok: false; reason: 'tenant_missing' };

/**
 * Closes the tenant's period: if a live invoice exists, returns it (a re-run or a second trigger
 * issues nothing). Otherwise, in one transaction under the tenant's row lock: claims every billable
 * usage row and adjustment of the tenant dated before the period's end that no live invoice claims
 * (rows dated before the period's start are late arrivals, billed here and flagged), writes one
 * line per (kind, model, deployment, key, variant, usage period) with the plan rate applied per
 * line, one line per adjustment (the period's SLA credit among them, written here once when
 * `sla` earns one: `writeSlaCredit`), and the invoice with its totals as version max+1.
 */
export async function issueInvoice(db: Db, input: IssueInput): Promise<IssueResult> {
  const { start, end } = periodRange(input.period);
  return db.transaction().execute(async (trx) => {
    const tenant = await trx.selectFrom('tenants').select(['id', 'plan']).where('id', '=', input.tenantId).forUpdate().executeTakeFirst();
    if (!tenant) return { ok: false, reason: 'tenant_missing' } as const;
    const live = await trx
      .selectFrom('invoices').selectAll()
      .where('tenant_id', '=', input.tenantId).where('period', '=', input.period).where('status', '=', 'issued')
      .executeTakeFirst();
    if (live) return { ok: true, invoice: live, created: false } as const;
    const previous = await trx
      .selectFrom('invoices').select(['id', 'version'])
      .where('tenant_id', '=', input.tenantId).where('period', '=', input.period)
      .orderBy('version', 'desc').limit(1)
      .executeTakeFirst();
    const bps = await planRateAt(trx, tenant.plan, new Date(end.getTime() - 1));
    const id = newId('inv');
    await trx
      .insertInto('invoices')
      .values({
        id, tenant_id: input.tenantId, period: input.period, version: (previous?.version ?? 0) + 1, status: 'issued',
        period_start: start, period_end: end, closed_at: input.closedAt, plan: tenant.plan, plan_adjustment_bps: bps,
        usage_rows: 0, usage_micros: 0, plan_adjustment_micros: 0, adjustments_micros: 0, total_micros: 0, late_rows: 0, late_micros: 0,
        workflow_id: input.workflowId, replaces_invoice_id: previous?.id ?? null,
      })
      .execute();

    await sql`
      insert into billing_claims (source, source_id, invoice_id)
      select 'usage', u.id, ${id} from usage u
      where u.tenant_id = ${input.tenantId} and u.created_at < ${end} and u.billable
        and not exists (select 1 from billing_claims c where c.source = 'usage' and c.source_id = u.id)`.execute(trx);
    await sql`
      insert into billing_claims (source, source_id, invoice_id)
      select 'adjustment', a.id, ${id} from usage_adjustments a
      where a.tenant_id = ${input.tenantId} and a.effective_at < ${end}
        and not exists (select 1 from billing_claims c where c.source = 'adjustment' and c.source_id = a.id)`.execute(trx);

    await sql`
      insert into invoice_lines (invoice_id, kind, model, deployment_id, key_id, variant, usage_period, late,
                                 requests, input_tokens, output_tokens, usage_micros, amount_micros)
      select ${id}, u.kind, u.model, u.deployment_id, u.key_id, u.variant,
             to_char(u.created_at at time zone 'UTC', 'YYYY-MM'), u.created_at < ${start},
             count(*), sum(u.input_tokens), sum(u.output_tokens), sum(u.cost_micros),
             sum(u.cost_micros) + round(sum(u.cost_micros)::numeric * ${bps} / 10000)::bigint
      from billing_claims c join usage u on u.id = c.source_id
      where c.invoice_id = ${id} and c.source = 'usage'
      group by 2, 3, 4, 5, 6, 7, 8
      order by 7, 2, 3, 4, 5, 6`.execute(trx);
    // The SLA credit (once per tenant and period), from the usage lines just written: claimed here
    // and written as an adjustment line by the next statement.
    if (input.sla) await writeSlaCredit(trx, { invoiceId: id, tenantId: input.tenantId, period: input.period, periodEnd: end, sla: input.sla });
    await sql`
      insert into invoice_lines (invoice_id, kind, model, deployment_id, key_id, variant, usage_period, late, description,
                                 requests, input_tokens, output_tokens, usage_micros, amount_micros)
      select ${id}, 'adjustment', null, null, null, null, to_char(a.effective_at at time zone 'UTC', 'YYYY-MM'),
             a.effective_at < ${start}, 'adjustment ' || a.id || ': ' || a.reason, 0, 0, 0, a.amount_micros, a.amount_micros
      from billing_claims c join usage_adjustments a on a.id = c.source_id
      where c.invoice_id = ${id} and c.source = 'adjustment'
      order by a.id`.execute(trx);

    const invoice = await trx
      .updateTable('invoices')
      .set((eb) => ({
        usage_rows: eb.selectFrom('invoice_lines').select(sql<number>`coalesce(sum(requests), 0)::bigint`.as('v')).where('invoice_id', '=', id).where('kind', '<>', 'adjustment'),
        usage_micros: eb.selectFrom('invoice_lines').select(sql<number>`coalesce(sum(usage_micros), 0)::bigint`.as('v')).where('invoice_id', '=', id).where('kind', '<>', 'adjustment'),
        plan_adjustment_micros: eb.selectFrom('invoice_lines').select(sql<number>`coalesce(sum(amount_micros - usage_micros), 0)::bigint`.as('v')).where('invoice_id', '=', id).where('kind', '<>', 'adjustment'),
        adjustments_micros: eb.selectFrom('invoice_lines').select(sql<number>`coalesce(sum(amount_micros), 0)::bigint`.as('v')).where('invoice_id', '=', id).where('kind', '=', 'adjustment'),
        total_micros: eb.selectFrom('invoice_lines').select(sql<number>`coalesce(sum(amount_micros), 0)::bigint`.as('v')).where('invoice_id', '=', id),
        late_rows: eb.selectFrom('invoice_lines').select(sql<number>`coalesce(sum(requests), 0)::bigint`.as('v')).where('invoice_id', '=', id).where('late', '=', true).where('kind', '<>', 'adjustment'),
        late_micros: eb.selectFrom('invoice_lines').select(sql<number>`coalesce(sum(usage_micros), 0)::bigint`.as('v')).where('invoice_id', '=', id).where('late', '=', true).where('kind', '<>', 'adjustment'),
      }))
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return { ok: true, invoice, created: true } as const;
  });
}

export interface Reconciliation {
  invoiceId: string;
  ok: boolean;
  /** One sentence per failed check; empty when ok. */
  problems: string[];
  /** Live ledger sum of the rows and adjustments the invoice claims. */
  ledgerMicros: number;
  invoiceUsageMicros: number;
  totalMicros: number;
  /** Billable usage of the tenant dated inside the period that no live invoice bills. */
  unbilledRows: number;
  unbilledMicros: number;
}

/**
 * Checks an invoice against the live ledger, trusting nothing it wrote itself:
 * 1. its lines add up to its total;
 * 2. its usage subtotal and row count equal the ledger's sum over the usage rows it claims, and its
 *    adjustments equal the ledger's adjustments it claims (catches a claimed row changed or removed);
 * 3. every billable usage row of the tenant dated inside the period is billed by a live invoice
 *    (this one, or a later one as late usage). A row inserted after the close, dated inside the
 *    period, fails this check until an invoice bills it;
 * 4. an SLA credit recorded for the period is on this invoice, as exactly its negative amount,
 *    and is its tier's rate of the charges it was computed from (`slaCreditProblems`).
 * A void invoice bills nothing and always reconciles.
 */
export async function reconcileInvoice(db: Db, invoiceId: string): Promise<Reconciliation | null> {
  const inv = await db.selectFrom('invoices').selectAll().where('id', '=', invoiceId).executeTakeFirst();
  if (!inv) return null;
  const base = { invoiceId, ledgerMicros: 0, invoiceUsageMicros: inv.usage_micros, totalMicros: inv.total_micros, unbilledRows: 0, unbilledMicros: 0 };
  if (inv.status === 'void') return { ...base, ok: true, problems: [] };
  const problems: string[] = [];
  const lines = await db
    .selectFrom('invoice_lines')
    .select([
      sql<number>`coalesce(sum(amount_micros), 0)::bigint`.as('total'),
      sql<number>`coalesce(sum(usage_micros) filter (where kind <> 'adjustment'), 0)::bigint`.as('usage'),
    ])
    .where('invoice_id', '=', invoiceId)
    .executeTakeFirstOrThrow();
  if (lines.total !== inv.total_micros) problems.push(`lines add up to ${lines.total} micro-USD, the invoice total is ${inv.total_micros}`);
  const ledger = await sql<{ rows: number; micros: number; adjustments: number }>`
    select (select count(*) from billing_claims c join usage u on u.id = c.source_id
             where c.invoice_id = ${invoiceId} and c.source = 'usage')::bigint as rows,
           (select coalesce(sum(u.cost_micros), 0) from billing_claims c join usage u on u.id = c.source_id
             where c.invoice_id = ${invoiceId} and c.source = 'usage')::bigint as micros,
           (select coalesce(sum(a.amount_micros), 0) from billing_claims c join usage_adjustments a on a.id = c.source_id
             where c.invoice_id = ${invoiceId} and c.source = 'adjustment')::bigint as adjustments`.execute(db);
  const l = ledger.rows[0] as { rows: number; micros: number; adjustments: number };
  if (l.micros !== inv.usage_micros || l.rows !== inv.usage_rows || l.micros !== lines.usage) {
    problems.push(`the ledger holds ${l.rows} claimed rows worth ${l.micros} micro-USD, the invoice bills ${inv.usage_rows} rows worth ${inv.usage_micros} (lines: ${lines.usage})`);
  }
  if (l.adjustments !== inv.adjustments_micros) problems.push(`the ledger holds ${l.adjustments} micro-USD of adjustments, the invoice bills ${inv.adjustments_micros}`);
  const unbilled = await sql<{ rows: number; micros: number }>`
    select count(*)::bigint as rows, coalesce(sum(u.cost_micros), 0)::bigint as micros from usage u
    where u.tenant_id = ${inv.tenant_id} and u.created_at >= ${inv.period_start} and u.created_at < ${inv.period_end} and u.billable
      and not exists (select 1 from billing_claims c where c.source = 'usage' and c.source_id = u.id)`.execute(db);
  const ub = unbilled.rows[0] as { rows: number; micros: number };
  problems.push(...(await slaCreditProblems(db, inv)));
  if (ub.rows > 0) {
    problems.push(`${ub.rows} usage rows worth ${ub.micros} micro-USD dated in ${inv.period} are on no invoice (written after the close at ${inv.closed_at.toISOString()}); the next period's invoice bills them as late usage`);
  }
  return { ...base, ok: problems.length === 0, problems, ledgerMicros: l.micros + l.adjustments, unbilledRows: ub.rows, unbilledMicros: ub.micros };
}

/** Voids a live invoice and releases what it claimed, so a re-issue bills it again. Null when not live. */
export async function voidInvoice(db: Db, id: string, by: string, reason: string, at: Date): Promise<Invoice | null> {
  return db.transaction().execute(async (trx) => {
    const inv = await trx
      .updateTable('invoices')
      .set({ status: 'void', voided_at: at, voided_by: by, void_reason: reason })
      .where('id', '=', id)
      .where('status', '=', 'issued')
      .returningAll()
      .executeTakeFirst();
    if (!inv) return null;
    await trx.deleteFrom('billing_claims').where('invoice_id', '=', id).execute();
    return inv;
  });
}

export async function getInvoice(db: Db, id: string): Promise<Invoice | null> {
  return (await db.selectFrom('invoices').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
}

export async function invoiceLines(db: Db, id: string): Promise<InvoiceLine[]> {
  return db.selectFrom('invoice_lines').selectAll().where('invoice_id', '=', id).orderBy('id').execute();
}

/** The live invoice of a tenant and period, if any. */
export async function liveInvoice(db: Db, tenantId: string, period: string): Promise<Invoice | null> {
  return (await db.selectFrom('invoices').selectAll()
    .where('tenant_id', '=', tenantId).where('period', '=', period).where('status', '=', 'issued')
    .executeTakeFirst()) ?? null;
}

/** A page of invoices by ID, optionally for one tenant, period or status. */
export async function listInvoices(
  db: Db,
  opts: { tenantId: string | null; period: string | null; status: 'issued' | 'void' | null; limit: number; after: string | null },
): Promise<Invoice[]> {
  let q = db.selectFrom('invoices').selectAll();
  if (opts.tenantId !== null) q = q.where('tenant_id', '=', opts.tenantId);
  if (opts.period !== null) q = q.where('period', '=', opts.period);
  if (opts.status !== null) q = q.where('status', '=', opts.status);
  if (opts.after !== null) q = q.where('id', '>', opts.after);
  return q.orderBy('id').limit(opts.limit).execute();
}

/** Runs a page's query when the caller allows (e.g. a bound on the export queries of a process). */
export type Throttle = <T>(run: () => Promise<T>) => Promise<T>;

/**
 * Reads a query a page at a time by key (keyset pagination: each page starts after the last key
 * of the one before) and hands `onRows` each page of at most `batchSize` rows; `onRows` returning
 * false stops early (a client went away). No transaction or cursor is held between pages, so a
 * client that reads slowly (or not at all) holds no database connection while it waits.
 */
async function streamPages<R, K>(
  db: Db, page: (after: K | null, limit: number) => RawBuilder<R>, keyOf: (row: R) => K, batchSize: number,
  onRows: (rows: R[]) => Promise<boolean>, throttle: Throttle = (run) => run(),
): Promise<number> {
  let total = 0;
  let after: K | null = null;
  for (;;) {
    const query = page(after, batchSize);
    const { rows } = await throttle(() => query.execute(db));
    total += rows.length;
    const last = rows[rows.length - 1];
    if (last === undefined || !(await onRows(rows))) break;
    if (rows.length < batchSize) break;
    after = keyOf(last);
  }
  return total;
}

export interface UsageExportRow {
  id: number;
  created_at: Date;
  tenant_id: string;
  request_id: string;
  step: string;
  key_id: string;
  kind: string;
  model: string;
  deployment_id: string;
  variant: string | null;
  price_id: number | null;
  tenant_price_id: number | null;
  input_tokens: number;
  output_tokens: number;
  cost_micros: number;
  billable: boolean;
  invoice_id: string | null;
}

export const USAGE_EXPORT_COLUMNS = [
  'id', 'created_at', 'tenant_id', 'request_id', 'step', 'key_id', 'kind', 'model', 'deployment_id', 'variant',
  'price_id', 'tenant_price_id', 'input_tokens', 'output_tokens', 'cost_micros', 'billable', 'invoice_id',
] as const satisfies ReadonlyArray<keyof UsageExportRow>;

/** Streams the raw usage ledger dated in `[start, end)` (one tenant or all), with the invoice billing each row. */
export async function streamUsage(
  db: Db,
  opts: { tenantId: string | null; start: Date; end: Date; batchSize?: number; throttle?: Throttle },
  onRows: (rows: UsageExportRow[]) => Promise<boolean>,
): Promise<number> {
  // Keyset on (created_at, id), as a row comparison the index serves directly: each page is an
  // ordered scan of (tenant_id, created_at, id) or, for all tenants, (created_at, id) (migration
  // 0103) that stops after `limit` rows. The key's time is carried in microseconds (a JS Date
  // would cut it to milliseconds and repeat rows).
  const tenant = opts.tenantId === null ? sql`` : sql`and u.tenant_id = ${opts.tenantId}`;
  const afterKey = (after: { us: number; id: number }) => {
    const at = sql`timestamptz 'epoch' + ${after.us}::double precision * interval '1 microsecond'`;
    return opts.tenantId === null
      ? sql`and (u.created_at, u.id) > (${at}, ${after.id})`
      : sql`and (u.tenant_id, u.created_at, u.id) > (${opts.tenantId}, ${at}, ${after.id})`;
  };
  const page = (after: { us: number; id: number } | null, limit: number) => sql<UsageExportRow & { key_us: number }>`
    select u.id, u.created_at, u.tenant_id, u.request_id, u.step, u.key_id, u.kind, u.model, u.deployment_id, u.variant,
           u.price_id, u.tenant_price_id, u.input_tokens, u.output_tokens, u.cost_micros, u.billable, c.invoice_id,
           (extract(epoch from u.created_at) * 1000000)::bigint as key_us
    from usage u left join billing_claims c on c.source = 'usage' and c.source_id = u.id
    where u.created_at >= ${opts.start} and u.created_at < ${opts.end} ${tenant}
      ${after === null ? sql`` : afterKey(after)}
    order by u.created_at, u.id
    limit ${limit}`;
  return streamPages(
    db, page, (r) => ({ us: r.key_us, id: r.id }), opts.batchSize ?? 5000,
    (rows) => onRows(rows.map(({ key_us: _key, ...row }) => row)), opts.throttle,
  );
}

/** One invoice line with its invoice's identity, as exported. */
export type InvoiceExportRow = Omit<InvoiceLine, 'id' | 'kind'> & {
  tenant_id: string;
  period: string;
  version: number;
  status: string;
  line_id: number;
  kind: string;
};

export const INVOICE_EXPORT_COLUMNS = [
  'invoice_id', 'tenant_id', 'period', 'version', 'status', 'line_id', 'kind', 'model', 'deployment_id', 'key_id', 'variant',
  'usage_period', 'late', 'description', 'requests', 'input_tokens', 'output_tokens', 'usage_micros', 'amount_micros',
] as const satisfies ReadonlyArray<keyof InvoiceExportRow>;

/** Streams the lines of every invoice of a period (one tenant or all), one row per line. */
export async function streamInvoiceLines(
  db: Db,
  opts: { tenantId: string | null; period: string; batchSize?: number; throttle?: Throttle },
  onRows: (rows: InvoiceExportRow[]) => Promise<boolean>,
): Promise<number> {
  const tenant = opts.tenantId === null ? sql`` : sql`and i.tenant_id = ${opts.tenantId}`;
  const page = (after: { invoiceId: string; lineId: number } | null, limit: number) => sql<InvoiceExportRow>`
    select i.id as invoice_id, i.tenant_id, i.period, i.version, i.status, l.id as line_id, l.kind, l.model, l.deployment_id,
           l.key_id, l.variant, l.usage_period, l.late, l.description, l.requests, l.input_tokens, l.output_tokens,
           l.usage_micros, l.amount_micros
    from invoices i join invoice_lines l on l.invoice_id = i.id
    where i.period = ${opts.period} ${tenant}
      ${after === null ? sql`` : sql`and (i.id, l.id) > (${after.invoiceId}, ${after.lineId})`}
    order by i.id, l.id
    limit ${limit}`;
  return streamPages(db, page, (r) => ({ invoiceId: r.invoice_id, lineId: r.line_id }), opts.batchSize ?? 5000, onRows, opts.throttle);
}
