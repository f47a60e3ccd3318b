/**
 * Indexes for the control worker's periodic gauges (issue 16, workers/ops-metrics.ts): batch
 * progress reads the unfinished batches and those finished in the last hour every minute; without
 * these it would scan every batch ever made.
 * Frozen in time: uses Kysely<any> and imports nothing of the app.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create index batches_unfinished_idx on batches (created_at)
    where status in ('validating', 'in_progress', 'finalizing', 'cancelling')`.execute(db);
  await sql`create index batches_finished_at_idx on batches ((coalesce(completed_at, failed_at, cancelled_at, expired_at)))`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists batches_finished_at_idx`.execute(db);
  await sql`drop index if exists batches_unfinished_idx`.execute(db);
}
