/**
 * Stored content — completions and error bodies of requests, stored responses (`/v1/responses`),
 * lines of uploaded and batch output files, experiment subjects — removed by a tenant's retention period or by an erase. Billing
 * records are never touched: usage rows, reservations, spend, invoices and the audit log stay, so
 * totals survive. Every statement here is idempotent: it only changes rows that still hold content.
 */
import { sql } from 'kysely';
import type { Db } from '../database.js';
import { eraseTenantCache } from './cache.js';

/** Batch states in which the input file is still being read. */
const ACTIVE_BATCH = ['validating', 'in_progress', 'finalizing', 'cancelling'] as const;

/** Request states whose row will still be written (their content is left alone). */
const OPEN_REQUEST = ['queued', 'running'] as const;

export interface PurgeResult {
  requests: number;
  files: number;
  /** Stored responses deleted. */
  responses: number;
}

/**
 * Purges content older than each tenant's `retention_days`: at most `limit` requests, `limit`
 * stored responses and `limit` files per call (the next run takes the rest). A file that an
 * active batch reads is kept.
 */
export async function purgeExpiredContent(db: Db, now: Date, limit: number): Promise<PurgeResult> {
  return db.transaction().execute(async (trx) => {
    const requests = await trx
      .updateTable('requests')
      .set({ result: null, error: null })
      .where('id', 'in', (eb) =>
        eb.selectFrom('requests as r')
          .innerJoin('tenants as t', 't.id', 'r.tenant_id')
          .select('r.id')
          .where('t.retention_days', 'is not', null)
          .where('r.status', 'not in', OPEN_REQUEST)
          .where(sql<boolean>`(r.result is not null or r.error is not null)`)
          .where(sql<boolean>`r.created_at < ${now}::timestamptz - make_interval(days => t.retention_days)`)
          .limit(limit))
      .executeTakeFirst();
    // Stored responses fall under the same rule as the request results they repeat.
    const responses = await trx
      .deleteFrom('responses')
      .where('id', 'in', (eb) =>
        eb.selectFrom('responses as s')
          .innerJoin('tenants as t', 't.id', 's.tenant_id')
          .select('s.id')
          .where('t.retention_days', 'is not', null)
          .where(sql<boolean>`s.created_at < ${now}::timestamptz - make_interval(days => t.retention_days)`)
          .limit(limit))
      .executeTakeFirst();
    const files = await trx
      .selectFrom('files as f')
      .innerJoin('tenants as t', 't.id', 'f.tenant_id')
      .select('f.id')
      .where('t.retention_days', 'is not', null)
      .where('f.content_purged_at', 'is', null)
      .where(sql<boolean>`f.created_at < ${now}::timestamptz - make_interval(days => t.retention_days)`)
      .where(({ not, exists, selectFrom }) => not(exists(
        selectFrom('batches as b').select('b.id').whereRef('b.input_file_id', '=', 'f.id').where('b.status', 'in', ACTIVE_BATCH),
      )))
      .limit(limit)
      .execute();
    const fileIds = files.map((f) => f.id);
    if (fileIds.length > 0) {
      await trx.deleteFrom('file_lines').where('file_id', 'in', fileIds).execute();
      await trx.updateTable('files').set({ content_purged_at: now }).where('id', 'in', fileIds).execute();
    }
    // Streamed text is kept only as long as a stream can be resumed (a day, under any tenant's
    // shortest retention); the completion itself stays on its request under the rules above.
    await sql`delete from stream_chunks where id in (
      select id from stream_chunks where created_at < ${now}::timestamptz - interval '1 day' order by id limit ${limit * 20})`.execute(trx);
    await sql`delete from stream_closed where closed_at < ${now}::timestamptz - interval '1 day'`.execute(trx);
    return { requests: Number(requests.numUpdatedRows), files: fileIds.length, responses: Number(responses.numDeletedRows) };
  });
}

export interface EraseResult {
  requests: number;
  /** Stored responses deleted. */
  responses: number;
  files: number;
  experiment_exposures: number;
  /** Feedback comments deleted (free text of the tenant's users; thumbs and scores stay). */
  feedback_comments: number;
  batches: number;
  keys_revoked: number;
  /** Webhook endpoints deleted (their secrets with them); event bodies are blanked. */
  webhook_endpoints: number;
  /** Requests still queued or running: their results are written after this erase (erase again later). */
  in_flight: number;
  /** Response-cache entries deleted (the tenant's cache generation is bumped: no process serves a copy). */
  cache_entries: number;
}

/**
 * Erases a tenant's stored content and revokes its keys, in one transaction: request results and
 * errors, stored responses, file lines, batch metadata and experiment subjects go; usage, reservations, spend,
 * invoices and audit rows stay. The tenant is suspended and `erased_at` set.
 */
export async function eraseTenantContent(db: Db, tenantId: string, now: Date): Promise<EraseResult> {
  return db.transaction().execute(async (trx) => {
    // Serialises with concurrent erases and tenant updates.
    await trx.selectFrom('tenants').select('id').where('id', '=', tenantId).forUpdate().executeTakeFirst();
    const keys = await trx.updateTable('api_keys').set({ revoked_at: now }).where('tenant_id', '=', tenantId).where('revoked_at', 'is', null).executeTakeFirst();
    const requests = await trx
      .updateTable('requests')
      .set({ result: null, error: null })
      .where('tenant_id', '=', tenantId)
      .where(sql<boolean>`(result is not null or error is not null)`)
      .executeTakeFirst();
    await sql`delete from stream_chunks where request_id in (select id from requests where tenant_id = ${tenantId})`.execute(trx);
    const responses = await trx.deleteFrom('responses').where('tenant_id', '=', tenantId).executeTakeFirst();
    const inFlight = await trx
      .selectFrom('requests')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('tenant_id', '=', tenantId)
      .where('status', 'in', OPEN_REQUEST)
      .executeTakeFirstOrThrow();
    const files = await trx.selectFrom('files').select('id').where('tenant_id', '=', tenantId).where('content_purged_at', 'is', null).execute();
    const fileIds = files.map((f) => f.id);
    if (fileIds.length > 0) {
      await trx.deleteFrom('file_lines').where('file_id', 'in', fileIds).execute();
      await trx.updateTable('files').set({ content_purged_at: now }).where('id', 'in', fileIds).execute();
    }
    const batches = await trx.updateTable('batches').set({ metadata: null }).where('tenant_id', '=', tenantId).where('metadata', 'is not', null).executeTakeFirst();
    const exposures = await trx
      .updateTable('experiment_exposures')
      .set({ subject: 'erased' })
      .where('tenant_id', '=', tenantId)
      .where('subject', '!=', 'erased')
      .executeTakeFirst();
    const comments = await trx.deleteFrom('feedback').where('tenant_id', '=', tenantId).where('kind', '=', 'comment').executeTakeFirst();
    // Webhook endpoints hold signing secrets and events hold bodies (batch metadata): remove both;
    // deliveries go with their endpoints.
    const endpoints = await trx.deleteFrom('webhook_endpoints').where('tenant_id', '=', tenantId).executeTakeFirst();
    await trx.updateTable('webhook_events').set({ body: '{}' }).where('tenant_id', '=', tenantId).execute();
    const cacheEntries = await eraseTenantCache(trx, tenantId);
    await trx.updateTable('tenants').set({ status: 'suspended', erased_at: now, updated_at: now }).where('id', '=', tenantId).execute();
    return {
      webhook_endpoints: Number(endpoints.numDeletedRows),
      requests: Number(requests.numUpdatedRows),
      responses: Number(responses.numDeletedRows),
      files: fileIds.length,
      experiment_exposures: Number(exposures.numUpdatedRows),
      feedback_comments: Number(comments.numDeletedRows),
      batches: Number(batches.numUpdatedRows),
      keys_revoked: Number(keys.numUpdatedRows),
      in_flight: Number(inFlight.n),
      cache_entries: cacheEntries,
    };
  });
}
