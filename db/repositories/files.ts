/** Files: metadata in `files`, content one row per line in `file_lines` (see the 0003 migration). */
import { sql } from 'kysely';
import type { Db } from '../database.js';
import type { FilePurpose, FileRow } from '../tables/index.js';

export interface NewFile {
  id: string;
  tenantId: string;
  purpose: FilePurpose;
  filename: string;
}

/** Inserts the file row with zero size; {@link finishFile} records the size once the lines are in. */
export async function insertFile(db: Db, f: NewFile): Promise<void> {
  await db
    .insertInto('files')
    .values({ id: f.id, tenant_id: f.tenantId, purpose: f.purpose, filename: f.filename, bytes: 0, line_count: 0, trailing_newline: false })
    .execute();
}

/**
 * Appends lines numbered from `firstLineNo` (1-based): the contents as one array parameter
 * (three parameters whatever the lines; a multi-row `values` was three per line).
 */
export async function insertFileLines(db: Db, fileId: string, firstLineNo: number, lines: readonly string[]): Promise<void> {
  if (lines.length === 0) return;
  await sql`
    insert into file_lines (file_id, line_no, content)
    select ${fileId}, ${firstLineNo}::integer + (l.n - 1)::integer, l.content
    from unnest(${lines}::text[]) with ordinality as l(content, n)`.execute(db);
}

export async function finishFile(db: Db, id: string, size: { bytes: number; lineCount: number; trailingNewline: boolean }): Promise<FileRow> {
  return db
    .updateTable('files')
    .set({ bytes: size.bytes, line_count: size.lineCount, trailing_newline: size.trailingNewline })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** A file, visible only to its own tenant (or to everyone when `tenantId` is null). */
export async function getFile(db: Db, id: string, tenantId: string | null): Promise<FileRow | null> {
  let q = db.selectFrom('files').selectAll().where('id', '=', id);
  if (tenantId !== null) q = q.where('tenant_id', '=', tenantId);
  return (await q.executeTakeFirst()) ?? null;
}

/** Newest first; `after` is the last ID of the previous page. */
export async function listFiles(db: Db, opts: { tenantId: string | null; purpose: string | null; limit: number; after: string | null }): Promise<FileRow[]> {
  let q = db.selectFrom('files').selectAll();
  if (opts.tenantId !== null) q = q.where('tenant_id', '=', opts.tenantId);
  if (opts.purpose !== null) q = q.where('purpose', '=', opts.purpose as FilePurpose);
  if (opts.after !== null) q = q.where('id', '<', opts.after);
  return q.orderBy('id', 'desc').limit(opts.limit).execute();
}

/** Deletes a file and its lines; false when there was none. */
export async function deleteFile(db: Db, id: string): Promise<boolean> {
  const r = await db.deleteFrom('files').where('id', '=', id).executeTakeFirst();
  return Number(r.numDeletedRows) > 0;
}

/** Up to `limit` lines after line `afterLineNo`, in order. */
export async function readFileLines(db: Db, fileId: string, afterLineNo: number, limit: number): Promise<Array<{ line_no: number; content: string }>> {
  return db
    .selectFrom('file_lines')
    .select(['line_no', 'content'])
    .where('file_id', '=', fileId)
    .where('line_no', '>', afterLineNo)
    .orderBy('line_no')
    .limit(limit)
    .execute();
}

/** Whether a batch that has not finished reads this file. */
export async function fileInUse(db: Db, fileId: string): Promise<boolean> {
  const row = await db
    .selectFrom('batches')
    .select('id')
    .where('input_file_id', '=', fileId)
    .where('status', 'in', ['validating', 'in_progress', 'finalizing', 'cancelling'])
    .executeTakeFirst();
  return row !== undefined;
}

