/**
 * The Files API, OpenAI's shapes: `POST /v1/files` (multipart, `purpose=batch`), list, retrieve,
 * content, delete. An upload is first received into a spool file (checked line by line as it
 * arrives: UTF-8, no NUL, a byte limit per line, a linear splitter), with no database connection
 * held while the client sends; only a complete, valid upload opens the transaction that copies it
 * into `file_lines` a page at a time (all or nothing; memory stays flat for a 200 MB file). A body
 * that stops making progress is cut off. Per-tenant caps bound files, bytes and uploads at once.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import busboy from 'busboy';
import { Router, type Request, type Response } from 'express';
import type { Db } from '../../db/database.js';
import type { FileRow } from '../../db/tables/index.js';
import { deleteFile, fileInUse, finishFile, getFile, insertFile, insertFileLines, listFiles, readFileLines } from '../../db/repositories/files.js';
import { lockTenantRow, tenantFileUsage } from '../../db/repositories/tenant-holdings.js';
import { newId } from '../../domain/ids.js';
import { authOf, requirePermission, type AuthContext } from '../auth.js';
import { HttpError, badRequest, notFound } from '../errors.js';
import { pageOf } from '../pagination.js';
import { LineTooLongError, createLineSplitter } from '../line-splitter.js';
import { DEFAULT_TENANT_CAPS, createConcurrencyGate, type TenantCaps } from '../tenant-caps.js';
import type { UploadProgress } from '../../contracts/limits.js';

/** Limits of the Files API. */
export interface FileLimits {
  /** Largest upload. @default 209715200 (200 MB, OpenAI's batch input limit) */
  maxBytes: number;
  /** Most lines in an upload. @default 50000 (OpenAI's) */
  maxLines: number;
  /** Longest line, in bytes (without its newline). @default 1048576 */
  maxLineBytes?: number;
}

export const DEFAULT_FILE_LIMITS: FileLimits = { maxBytes: 200 * 1024 * 1024, maxLines: 50_000, maxLineBytes: 1024 * 1024 };
const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

export type { UploadProgress } from '../../contracts/limits.js';

export const DEFAULT_UPLOAD_PROGRESS: UploadProgress = { windowMs: 10_000, minBytes: 10_240 };

/** Dependencies and settings of {@link fileRoutes}. */
export interface FileRouteDeps {
  db: Db;
  limits: FileLimits;
  /** @default DEFAULT_UPLOAD_PROGRESS */
  progress?: UploadProgress;
  /** @default DEFAULT_TENANT_CAPS */
  caps?: TenantCaps;
  /** Where uploads are spooled before they are stored. @default `<os tmpdir>/sluice-uploads` */
  spoolDir?: string;
}

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

/** What the spool phase learned of an upload. */
interface Spooled {
  filename: string;
  bytes: number;
  lineCount: number;
  trailingNewline: boolean;
}

/** Checks one line of an upload: valid UTF-8, no NUL. */
function checkLine(line: Buffer, lineNo: number): void {
  if (line.includes(0)) throw badRequest(`line ${lineNo} contains a NUL character`, 'file', 'invalid_file');
  try {
    STRICT_UTF8.decode(line);
  } catch {
    throw badRequest(`line ${lineNo} is not valid UTF-8`, 'file', 'invalid_file');
  }
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });
const UTF8 = new TextDecoder('utf-8');

/**
 * Receives the multipart body into `spoolPath`, checking every line as it arrives. No database
 * connection is held meanwhile. Fails fast: a bad line, a body below the least progress or a
 * client that goes away ends it at once.
 */
async function spoolUpload(req: Request, spoolPath: string, limits: FileLimits, progress: UploadProgress): Promise<Spooled> {
  const maxLineBytes = limits.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const bb = busboy({ headers: req.headers, limits: { fileSize: limits.maxBytes, files: 1, fields: 10, fieldSize: 1024 } });
  const out = await open(spoolPath, 'w');
  let purpose: string | null = null;
  let fileSeen = false;
  let received = 0;
  let atLastWindow = 0;
  let abort: (err: Error) => void = () => undefined;
  const aborted = new Promise<never>((_resolve, reject) => {
    abort = reject;
  });
  aborted.catch(() => undefined);

  const consume = async (stream: NodeJS.ReadableStream & { truncated?: boolean }, filename: string): Promise<Spooled> => {
    const splitter = createLineSplitter(maxLineBytes);
    let bytes = 0;
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        const first = splitter.lines + 1;
        const lines = splitter.push(chunk);
        if (splitter.lines > limits.maxLines) throw badRequest(`The file has more than ${limits.maxLines} lines`, 'file', 'too_many_lines');
        lines.forEach((line, i) => checkLine(line, first + i));
        await out.write(chunk);
      }
    } catch (err) {
      if (err instanceof LineTooLongError) throw badRequest(`line ${err.lineNo} is longer than ${err.maxLineBytes} bytes`, 'file', 'line_too_long');
      throw err;
    }
    if (stream.truncated) throw new HttpError('request_too_large', `The file is larger than ${limits.maxBytes} bytes`, 'file_too_large', 'file');
    const last = splitter.end();
    if (last !== null) {
      if (splitter.lines > limits.maxLines) throw badRequest(`The file has more than ${limits.maxLines} lines`, 'file', 'too_many_lines');
      checkLine(last, splitter.lines);
    }
    return { filename: filename.slice(0, 255) || 'upload.jsonl', bytes, lineCount: splitter.lines, trailingNewline: last === null && splitter.lines > 0 };
  };

  let upload: Promise<Spooled> | null = null;
  let fileStream: NodeJS.ReadableStream & { destroy?: (err?: Error) => void } | null = null;
  const parsed = new Promise<void>((resolve, reject) => {
    bb.on('field', (name, value) => {
      if (name === 'purpose') purpose = value;
    });
    bb.on('file', (name, stream, info) => {
      if (name !== 'file' || fileSeen) {
        stream.resume();
        return;
      }
      fileSeen = true;
      fileStream = stream;
      upload = consume(stream, info.filename ?? '');
      upload.catch((err: Error) => {
        stream.resume();
        abort(err);
      });
    });
    bb.on('close', () => resolve());
    bb.on('error', (err) => reject(badRequest(`Malformed multipart body: ${(err as Error).message}`, null, 'invalid_multipart')));
  });
  const countBytes = (chunk: Buffer) => {
    received += chunk.length;
  };
  const onClose = () => {
    if (!req.complete) abort(new HttpError('invalid_request_error', 'The client closed the connection during the upload', 'upload_aborted'));
  };
  const watchdog = setInterval(() => {
    if (received - atLastWindow < progress.minBytes) {
      abort(new HttpError('request_timeout', `The upload sent less than ${progress.minBytes} bytes in ${progress.windowMs} ms`, 'upload_too_slow'));
    }
    atLastWindow = received;
  }, progress.windowMs);
  watchdog.unref();
  req.on('data', countBytes);
  req.on('close', onClose);
  req.pipe(bb);
  try {
    await Promise.race([parsed, aborted]);
    if (upload === null) throw badRequest("The 'file' part is missing", 'file', 'missing_required_parameter');
    const spooled = await Promise.race([upload as Promise<Spooled>, aborted]);
    if (purpose !== 'batch') throw badRequest(`'purpose' must be 'batch', got ${purpose === null ? 'nothing' : `'${String(purpose).slice(0, 64)}'`}`, 'purpose', 'invalid_value');
    return spooled;
  } catch (err) {
    // Stop everything: the file part's reader ends (its loop throws), the parser is dropped.
    req.unpipe(bb);
    bb.removeAllListeners('file');
    bb.on('error', () => undefined);
    (fileStream as { destroy?: (err?: Error) => void } | null)?.destroy?.(err instanceof Error ? err : new Error(String(err)));
    bb.destroy();
    throw err;
  } finally {
    clearInterval(watchdog);
    req.off('data', countBytes);
    req.off('close', onClose);
    await out.close();
  }
}

/** Copies a spooled upload into a new file of `tenantId`, in one short transaction; rechecks the tenant's caps under its lock. */
async function storeSpooled(db: Db, spoolPath: string, tenantId: string, spooled: Spooled, caps: TenantCaps): Promise<FileRow> {
  const id = newId('file');
  return db.transaction().execute(async (trx) => {
    if (!(await lockTenantRow(trx, tenantId))) throw notFound('Tenant');
    checkFileCaps(await tenantFileUsage(trx, tenantId), caps, spooled.bytes);
    await insertFile(trx, { id, tenantId, purpose: 'batch', filename: spooled.filename });
    const splitter = createLineSplitter(Number.MAX_SAFE_INTEGER);
    let written = 0;
    let page: string[] = [];
    const flush = async () => {
      await insertFileLines(trx, id, written + 1, page);
      written += page.length;
      page = [];
    };
    for await (const chunk of createReadStream(spoolPath, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
      for (const line of splitter.push(chunk)) {
        page.push(UTF8.decode(line));
        if (page.length >= INSERT_PAGE) await flush();
      }
    }
    const last = splitter.end();
    if (last !== null) page.push(UTF8.decode(last));
    await flush();
    return finishFile(trx, id, { bytes: spooled.bytes, lineCount: spooled.lineCount, trailingNewline: spooled.trailingNewline });
  });
}

/** Refuses an upload of `adding` bytes that would take the tenant past its file caps. */
function checkFileCaps(usage: { files: number; bytes: number }, caps: TenantCaps, adding: number): void {
  if (usage.files + 1 > caps.maxFiles) {
    throw new HttpError('conflict_error', `The tenant already stores ${usage.files} files, the most allowed (${caps.maxFiles}); delete some first`, 'file_count_limit');
  }
  if (usage.bytes + adding > caps.maxFileBytes) {
    throw new HttpError('conflict_error', `The tenant's files would take more than ${caps.maxFileBytes} bytes; delete some first`, 'file_storage_limit', 'file');
  }
}

export function fileRoutes(deps: FileRouteDeps): Router {
  const router = Router();
  const { db } = deps;
  const caps = deps.caps ?? DEFAULT_TENANT_CAPS;
  const progress = deps.progress ?? DEFAULT_UPLOAD_PROGRESS;
  const spoolDir = deps.spoolDir ?? path.join(os.tmpdir(), 'sluice-uploads');
  const uploads = createConcurrencyGate(caps.maxConcurrentUploads, 'concurrent_uploads_limit', 'uploads');

  router.post('/files', requirePermission(deps, 'batches'), async (req, res) => {
    const tenantId = tenantOf(authOf(req));
    const contentType = req.get('content-type') ?? '';
    if (!contentType.toLowerCase().startsWith('multipart/form-data')) {
      throw badRequest("Uploads must be multipart/form-data with a 'file' part and 'purpose'", null, 'invalid_content_type');
    }
    const leave = uploads.enter(tenantId);
    const spoolPath = path.join(spoolDir, `${newId('upload')}.part`);
    try {
      // Cheap early refusal; the transaction that stores the file checks again under the tenant's lock.
      checkFileCaps(await tenantFileUsage(db, tenantId), caps, 0);
      await mkdir(spoolDir, { recursive: true, mode: 0o700 });
      const spooled = await spoolUpload(req, spoolPath, deps.limits, progress);
      res.json(fileJson(await storeSpooled(db, spoolPath, tenantId, spooled, caps)));
    } catch (err) {
      // The rest of the body is not read: close the connection once the error is sent. A client
      // that stalled is cut off at once; one still sending is drained so it can read the answer.
      res.setHeader('Connection', 'close');
      if (err instanceof HttpError && err.code === 'upload_too_slow') res.once('finish', () => req.socket.destroy());
      else if (!req.complete) req.resume();
      throw err;
    } finally {
      leave();
      await rm(spoolPath, { force: true });
    }
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
