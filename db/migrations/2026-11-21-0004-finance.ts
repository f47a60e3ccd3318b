/**
 * Finance: per-request fees and batch discounts on list prices, tenant price overrides
 * (negotiated rates), plan markups/discounts, ledger adjustments, invoices with their lines, and
 * the claims that bind each ledger entry to at most one live invoice. Frozen in time: uses
 * Kysely<any> and imports nothing of the app.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('prices')
    .addColumn('request_micros', 'bigint', (c) => c.notNull().defaultTo(0).check(sql`request_micros >= 0`))
    .addColumn('batch_discount_bps', 'integer', (c) => c.notNull().defaultTo(0).check(sql`batch_discount_bps between 0 and 10000`))
    .execute();

  await db.schema
    .createTable('tenant_prices')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('deployment_id', 'text', (c) => c.notNull().references('deployments.id'))
    .addColumn('input_micros_per_mtok', 'bigint', (c) => c.notNull().check(sql`input_micros_per_mtok >= 0`))
    .addColumn('output_micros_per_mtok', 'bigint', (c) => c.notNull().check(sql`output_micros_per_mtok >= 0`))
    .addColumn('request_micros', 'bigint', (c) => c.notNull().defaultTo(0).check(sql`request_micros >= 0`))
    .addColumn('effective_from', 'timestamptz', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('tenant_prices_uq', ['tenant_id', 'deployment_id', 'effective_from'])
    .execute();

  await db.schema
    .createTable('plan_rates')
    .addColumn('plan', 'text', (c) => c.notNull())
    .addColumn('adjustment_bps', 'integer', (c) => c.notNull().check(sql`adjustment_bps between -10000 and 100000`))
    .addColumn('effective_from', 'timestamptz', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('plan_rates_pk', ['plan', 'effective_from'])
    .execute();

  await db.schema.alterTable('usage').addColumn('tenant_price_id', 'bigint', (c) => c.references('tenant_prices.id')).execute();

  await db.schema
    .createTable('usage_adjustments')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('usage_id', 'bigint', (c) => c.references('usage.id'))
    .addColumn('amount_micros', 'bigint', (c) => c.notNull().check(sql`amount_micros <> 0`))
    .addColumn('reason', 'text', (c) => c.notNull().check(sql`length(reason) > 0`))
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('effective_at', 'timestamptz', (c) => c.notNull())
    .addColumn('idempotency_key', 'text', (c) => c.unique())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('usage_adjustments_tenant_idx').on('usage_adjustments').columns(['tenant_id', 'effective_at']).execute();

  await db.schema
    .createTable('invoices')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('period', 'text', (c) => c.notNull().check(sql`period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'`))
    .addColumn('version', 'integer', (c) => c.notNull().check(sql`version >= 1`))
    .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('issued', 'void')`))
    .addColumn('currency', 'text', (c) => c.notNull().defaultTo('USD'))
    .addColumn('period_start', 'timestamptz', (c) => c.notNull())
    .addColumn('period_end', 'timestamptz', (c) => c.notNull())
    .addColumn('closed_at', 'timestamptz', (c) => c.notNull())
    .addColumn('plan', 'text', (c) => c.notNull())
    .addColumn('plan_adjustment_bps', 'integer', (c) => c.notNull())
    .addColumn('usage_rows', 'bigint', (c) => c.notNull())
    .addColumn('usage_micros', 'bigint', (c) => c.notNull())
    .addColumn('plan_adjustment_micros', 'bigint', (c) => c.notNull())
    .addColumn('adjustments_micros', 'bigint', (c) => c.notNull())
    .addColumn('total_micros', 'bigint', (c) => c.notNull())
    .addColumn('late_rows', 'bigint', (c) => c.notNull())
    .addColumn('late_micros', 'bigint', (c) => c.notNull())
    .addColumn('workflow_id', 'text', (c) => c.notNull())
    .addColumn('replaces_invoice_id', 'text', (c) => c.references('invoices.id'))
    .addColumn('voided_at', 'timestamptz')
    .addColumn('voided_by', 'text')
    .addColumn('void_reason', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint('invoices_tenant_period_version_uq', ['tenant_id', 'period', 'version'])
    .execute();
  // At most one live invoice per tenant and period: a double trigger cannot issue two.
  await sql`create unique index invoices_live_uq on invoices (tenant_id, period) where status = 'issued'`.execute(db);
  await db.schema.createIndex('invoices_period_idx').on('invoices').columns(['period', 'tenant_id']).execute();

  await db.schema
    .createTable('invoice_lines')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('invoice_id', 'text', (c) => c.notNull().references('invoices.id'))
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('sync', 'async', 'batch', 'adjustment')`))
    .addColumn('model', 'text')
    .addColumn('deployment_id', 'text')
    .addColumn('key_id', 'text')
    .addColumn('variant', 'text')
    .addColumn('usage_period', 'text', (c) => c.notNull())
    .addColumn('late', 'boolean', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('requests', 'bigint', (c) => c.notNull())
    .addColumn('input_tokens', 'bigint', (c) => c.notNull())
    .addColumn('output_tokens', 'bigint', (c) => c.notNull())
    .addColumn('usage_micros', 'bigint', (c) => c.notNull())
    .addColumn('amount_micros', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('invoice_lines_invoice_idx').on('invoice_lines').column('invoice_id').execute();

  // Which live invoice bills a ledger entry. Not the ledger itself: voiding an invoice releases its claims.
  await db.schema
    .createTable('billing_claims')
    .addColumn('source', 'text', (c) => c.notNull().check(sql`source in ('usage', 'adjustment')`))
    .addColumn('source_id', 'bigint', (c) => c.notNull())
    .addColumn('invoice_id', 'text', (c) => c.notNull().references('invoices.id'))
    .addPrimaryKeyConstraint('billing_claims_pk', ['source', 'source_id'])
    .execute();
  await db.schema.createIndex('billing_claims_invoice_idx').on('billing_claims').column('invoice_id').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of ['billing_claims', 'invoice_lines', 'invoices', 'usage_adjustments']) {
    await db.schema.dropTable(table).ifExists().execute();
  }
  await db.schema.alterTable('usage').dropColumn('tenant_price_id').execute();
  for (const table of ['plan_rates', 'tenant_prices']) await db.schema.dropTable(table).ifExists().execute();
  await db.schema.alterTable('prices').dropColumn('request_micros').dropColumn('batch_discount_bps').execute();
}
