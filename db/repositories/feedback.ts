/** Feedback on completions: one row per (tenant, request, metric), the last value sent winning. */
import { sql } from 'kysely';
import type { Db } from '../database.js';
import type { FeedbackKind, FeedbackRow } from '../tables/index.js';
import { newId } from '../../domain/ids.js';

export interface FeedbackValue {
  kind: FeedbackKind;
  valueBool: boolean | null;
  valueNum: number | null;
  comment: string | null;
}

/**
 * Stores feedback in one statement: a new row (`created`), the same value again (nothing
 * changes: `unchanged`, the stored row), or a different value replacing the stored one
 * (`updated`; `key_id` becomes the sender's).
 */
export async function upsertFeedback(
  db: Db,
  f: { tenantId: string; requestId: string; keyId: string; metric: string } & FeedbackValue,
): Promise<{ row: FeedbackRow; outcome: 'created' | 'updated' | 'unchanged' }> {
  const written = await db
    .insertInto('feedback')
    .values({
      id: newId('fb'), tenant_id: f.tenantId, request_id: f.requestId, key_id: f.keyId, metric: f.metric,
      kind: f.kind, value_bool: f.valueBool, value_num: f.valueNum, comment: f.comment,
    })
    .onConflict((oc) => oc
      .columns(['tenant_id', 'request_id', 'metric'])
      .doUpdateSet((eb) => ({
        kind: eb.ref('excluded.kind'), value_bool: eb.ref('excluded.value_bool'), value_num: eb.ref('excluded.value_num'),
        comment: eb.ref('excluded.comment'), key_id: eb.ref('excluded.key_id'), updated_at: sql<Date>`now()`,
      }))
      .where(sql<boolean>`(feedback.kind, feedback.value_bool, feedback.value_num, feedback.comment) is distinct from (excluded.kind, excluded.value_bool, excluded.value_num, excluded.comment)`))
    .returningAll()
    .returning(sql<boolean>`xmax = 0`.as('inserted'))
    .executeTakeFirst();
  if (written) {
    const { inserted, ...row } = written;
    return { row, outcome: inserted ? 'created' : 'updated' };
  }
  const row = await db.selectFrom('feedback').selectAll()
    .where('tenant_id', '=', f.tenantId).where('request_id', '=', f.requestId).where('metric', '=', f.metric)
    .executeTakeFirstOrThrow();
  return { row, outcome: 'unchanged' };
}
