/**
 * The Files API, OpenAI's shapes: `POST /v1/files` (multipart, `purpose=batch`), list, retrieve,
 * content, delete. An upload streams into `file_lines` a page at a time inside one transaction
 * (all or nothing; memory stays flat for a 200 MB file); limits on bytes and lines are configurable.
 */
import busboy from 'busboy';
import { Router, type Request, type Response } from 'express';
import type { Db } from '../../db/database.js';
import type { FileRow } from '../../db/tables/index.js';
import { deleteFile, fileInUse, finishFile, getFile, insertFile, insertFileLines, listFiles, readFileLines } from '../../db/repositories/files.js';
import { newId } from '../../domain/ids.js';
import { authOf, requirePermission, type AuthContext } from '../auth.js';
import { HttpError, badRequest, notFound } from '../errors.js';
import { pageOf } from '../pagination.js';

/** Limits of the Files API. */
export interface FileLimits {
  /** Largest upload. @default 209715200 (200 MB, OpenAI's batch input limit) */
  maxBytes: number;
  /** Most lines in an upload. @default 50000 (OpenAI's) */
  maxLines: number;
}

export const DEFAULT_FILE_LIMITS: FileLimits = { maxBytes: 200 * 1024 * 1024, maxLines: 50_000 };

/** Lines written per insert while an upload streams in. */
const INSERT_PAGE = 1000;

export function fileJson(f: FileRow) {
  return {
    id: f.id,
    object: 'file' as const,
    bytes: f.bytes,
    created_at: Math.floor(f.created_at.getTime() / 1000),
    filename: f.filename,
    purpose: f.purpose,
    status: 'processed' as const,
    status_details: null,
    expires_at: null,
  };
}

/** Tenant whose files the caller sees: its own, or every tenant's for a super admin. */
export function readScope(auth: AuthContext): string | null {
  return auth.role === 'super_admin' ? null : auth.tenantId ?? '';
}

export function tenantOf(auth: AuthContext): string {
  if (auth.tenantId === null) throw new HttpError('permission_error', 'Files and batches need a tenant key; the admin key has no tenant', 'permission_denied');
  return auth.tenantId;
}

/** Parses the multipart upload, streaming the `file` part into a new file of `tenantId`. */
function receiveUpload(db: Db, req: Request, tenantId: string, limits: FileLimits): Promise<FileRow> {
  const contentType = req.get('content-type') ?? '';
  if (!contentType.toLowerCase().startsWith('multipart/form-data')) {
    throw badRequest("Uploads must be multipart/form-data with a 'file' part and 'purpose'", null, 'invalid_content_type');
  }
  const id = newId('file');
  return db.transaction().execute(async (trx) => {
    const bb = busboy({ headers: req.headers, limits: { fileSize: limits.maxBytes, files: 1, fields: 10, fieldSize: 1024 } });
    let purpose: string | null = null;
    let upload: Promise<{ bytes: number; lineCount: number; trailingNewline: boolean }> | null = null;

    const consume = async (stream: NodeJS.ReadableStream & { truncated?: boolean }, filename: string) => {
      await insertFile(trx, { id, tenantId, purpose: 'batch', filename: filename.slice(0, 255) || 'upload.jsonl' });
      const decoder = new TextDecoder('utf-8', { fatal: true });
      let bytes = 0;
      let lineCount = 0;
      let partial = '';
      let pending: string[] = [];
      const flushLines = async () => {
        const page = pending;
        pending = [];
        await insertFileLines(trx, id, lineCount - page.length + 1, page);
      };
      const push = async (line: string) => {
        if (line.includes('\u0000')) throw badRequest(`line ${lineCount + 1} contains a NUL character`, 'file', 'invalid_file');
        lineCount += 1;
        if (lineCount > limits.maxLines) throw badRequest(`The file has more than ${limits.maxLines} lines`, 'file', 'too_many_lines');
        pending.push(line);
        if (pending.length >= INSERT_PAGE) await flushLines();
      };
      try {
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          bytes += chunk.length;
          const parts = (partial + decoder.decode(chunk, { stream: true })).split('\n');
          partial = parts.pop() ?? '';
          for (const line of parts) await push(line);
        }
        partial += decoder.decode();
      } catch (err) {
        if (err instanceof TypeError) throw badRequest('The file is not valid UTF-8', 'file', 'invalid_file');
        throw err;
      }
      if (stream.truncated) throw new HttpError('request_too_large', `The file is larger than ${limits.maxBytes} bytes`, 'file_too_large', 'file');
      const trailingNewline = partial === '' && lineCount > 0;
      if (partial !== '') await push(partial);
      await flushLines();
      return { bytes, lineCount, trailingNewline };
    };

    const done = new Promise<void>((resolve, reject) => {
      bb.on('field', (name, value) => {
        if (name === 'purpose') purpose = value;
      });
      bb.on('file', (name, stream, info) => {
        if (name !== 'file' || upload !== null) {
          stream.resume();
          return;
        }
        upload = consume(stream, info.filename ?? '');
        upload.catch(() => stream.resume());
      });
      bb.on('close', () => resolve());
      bb.on('error', (err) => reject(badRequest(`Malformed multipart body: ${(err as Error).message}`, null, 'invalid_multipart')));
    });
    req.pipe(bb);
    try {
      await done;
      if (upload === null) throw badRequest("The 'file' part is missing", 'file', 'missing_required_parameter');
      const size = await (upload as Promise<{ bytes: number; lineCount: number; trailingNewline: boolean }>);
      if (purpose !== 'batch') throw badRequest(`'purpose' must be 'batch', got ${purpose === null ? 'nothing' : `'${purpose}'`}`, 'purpose', 'invalid_value');
      return await finishFile(trx, id, size);
    } catch (err) {
      req.unpipe(bb);
      req.resume();
      throw err;
    }
  });
}

export function fileRoutes(deps: { db: Db; limits: FileLimits }): Router {
  const router = Router();
  const { db } = deps;

  router.post('/files', requirePermission(deps, 'batches'), async (req, res) => {
    const tenantId = tenantOf(authOf(req));
    res.json(fileJson(await receiveUpload(db, req, tenantId, deps.limits)));
  });

  router.get('/files', requirePermission(deps, 'batches'), async (req, res) => {
    const page = pageOf(req);
    const purpose = typeof req.query.purpose === 'string' && req.query.purpose !== '' ? req.query.purpose : null;
    const rows = await listFiles(db, { tenantId: readScope(authOf(req)), purpose, limit: page.limit + 1, after: page.after });
    const data = rows.slice(0, page.limit).map(fileJson);
    res.json({ object: 'list', data, has_more: rows.length > page.limit, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null });
  });

  router.get('/files/:id', requirePermission(deps, 'batches'), async (req, res) => {
    const file = await getFile(db, String(req.params.id), readScope(authOf(req)));
    if (!file) throw notFound('File');
    res.json(fileJson(file));
  });

  router.get('/files/:id/content', requirePermission(deps, 'batches'), async (req, res: Response) => {
    const file = await getFile(db, String(req.params.id), readScope(authOf(req)));
    if (!file) throw notFound('File');
    if (file.content_purged_at !== null) throw new HttpError('conflict_error', 'The content of this file was erased (retention or erase)', 'content_purged');
    res.setHeader('Content-Type', 'application/octet-stream');
    res.setHeader('Content-Length', String(file.bytes));
    res.setHeader('Content-Disposition', `attachment; filename="${file.filename.replace(/["\\\r\n]/g, '_')}"`);
    let first = true;
    for (let after = 0; ;) {
      const page = await readFileLines(db, file.id, after, INSERT_PAGE);
      if (page.length === 0) break;
      let text = '';
      for (const line of page) {
        text += (first ? '' : '\n') + line.content;
        first = false;
      }
      after = page[page.length - 1]?.line_no ?? after;
      if (!res.write(text)) await new Promise((resolve) => res.once('drain', resolve));
    }
    res.end(file.trailing_newline ? '\n' : '');
  });

  router.delete('/files/:id', requirePermission(deps, 'batches'), async (req, res) => {
    const file = await getFile(db, String(req.params.id), readScope(authOf(req)));
    if (!file) throw notFound('File');
    if (await fileInUse(db, file.id)) throw new HttpError('conflict_error', 'The file is the input of a batch that has not finished', 'file_in_use');
    await deleteFile(db, file.id);
    res.json({ id: file.id, object: 'file', deleted: true });
  });

  return router;
}
