/**
 * The Batches API, OpenAI's shapes: `POST /v1/batches`, retrieve, list (newest first, `after` /
 * `limit`), cancel. Creating one records it as `validating` and starts workflow `batch-<id>`,
 * which validates, runs every line through the `chatRequest` pipeline and writes the output files.
 */
import { Router } from 'express';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Db } from '../../db/database.js';
import type { BatchRow } from '../../db/tables/index.js';
import { deleteBatch, getBatch, insertBatch, listBatches, transitionBatch } from '../../db/repositories/batches.js';
import { getFile } from '../../db/repositories/files.js';
import { newId } from '../../domain/ids.js';
import type { BatchWorkflowInput } from '../../contracts/batch.js';
import { CONTROL_TASK_QUEUE, PriorityKeys, SearchAttributes, batchWorkflowId } from '../../contracts/ids.js';
import { countActiveBatches, lockTenantRow } from '../../db/repositories/tenant-holdings.js';
import { DEFAULT_TENANT_CAPS, type TenantCaps } from '../tenant-caps.js';
import type { batch as batchWorkflow } from '../../workflows/batch.js';
import { authOf, requirePermission } from '../auth.js';
import { HttpError, badRequest, notFound } from '../errors.js';
import { pageOf } from '../pagination.js';
import { startFailureResponse } from '../workflow-start.js';
import type { Logger } from '../../runtime/logger.js';
import { readScope, tenantOf } from './files.js';

/** How batches run. */
export interface BatchRunConfig {
  /** Lines of one batch in flight at once. @default 1024 */
  concurrency: number;
  /** Lines one workflow run starts before continuing as new. @default 2048 */
  linesPerRun: number;
  /** Most lines per chunk activity (admit, infer, complete). @default 256 */
  chunkLines: number;
}

export const DEFAULT_BATCH_RUN: BatchRunConfig = { concurrency: 1024, linesPerRun: 2048, chunkLines: 256 };

const ENDPOINTS = ['/v1/chat/completions', '/v1/embeddings', '/v1/responses'];
const WINDOWS: Record<string, number> = { '24h': 24 * 3600_000 };

const secs = (d: Date | null) => (d ? Math.floor(d.getTime() / 1000) : null);

export function batchJson(b: BatchRow) {
  return {
    id: b.id,
    object: 'batch' as const,
    endpoint: b.endpoint,
    model: b.model,
    errors: b.errors && b.errors.length > 0 ? { object: 'list' as const, data: b.errors } : null,
    input_file_id: b.input_file_id,
    completion_window: b.completion_window,
    status: b.status,
    output_file_id: b.output_file_id,
    error_file_id: b.error_file_id,
    created_at: secs(b.created_at) as number,
    in_progress_at: secs(b.in_progress_at),
    expires_at: secs(b.expires_at),
    finalizing_at: secs(b.finalizing_at),
    completed_at: secs(b.completed_at),
    failed_at: secs(b.failed_at),
    expired_at: secs(b.expired_at),
    cancelling_at: secs(b.cancelling_at),
    cancelled_at: secs(b.cancelled_at),
    request_counts: { total: b.total, completed: b.completed, failed: b.failed },
    metadata: b.metadata,
    estimated_cost_micros: b.estimated_cost_micros,
  };
}

function metadataOf(raw: unknown): Record<string, string> | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw badRequest("'metadata' must be an object of strings", 'metadata', 'invalid_type');
  const entries = Object.entries(raw as Record<string, unknown>);
  if (entries.length > 16) throw badRequest("'metadata' may have at most 16 keys", 'metadata', 'invalid_value');
  for (const [k, v] of entries) {
    if (k.length > 64 || typeof v !== 'string' || v.length > 512) {
      throw badRequest("'metadata' keys must be at most 64 characters and values strings of at most 512", 'metadata', 'invalid_value');
    }
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

/** Refuses a new batch when the tenant already has `max` unfinished ones. */
function checkActiveBatches(active: number, max: number): void {
  if (active >= max) {
    throw new HttpError('rate_limit_error', `The tenant already has ${active} unfinished batches, the most allowed (${max}); wait for one to finish`, 'active_batches_limit', null, 60);
  }
}

export function batchRoutes(deps: { db: Db; temporal: Client; run: BatchRunConfig; log: Logger; caps?: TenantCaps }): Router {
  const router = Router();
  const { db } = deps;
  const maxActive = (deps.caps ?? DEFAULT_TENANT_CAPS).maxActiveBatches;

  router.post('/batches', requirePermission(deps, 'batches'), async (req, res) => {
    const auth = authOf(req);
    const tenantId = tenantOf(auth);
    const body = (req.body ?? {}) as Record<string, unknown>;
    if (typeof body.input_file_id !== 'string' || body.input_file_id === '') throw badRequest("'input_file_id' is required", 'input_file_id', 'missing_required_parameter');
    if (typeof body.endpoint !== 'string' || !ENDPOINTS.includes(body.endpoint)) {
      throw badRequest(`'endpoint' must be one of ${ENDPOINTS.join(', ')}`, 'endpoint', 'invalid_value');
    }
    const windowMs = typeof body.completion_window === 'string' ? WINDOWS[body.completion_window] : undefined;
    if (windowMs === undefined) throw badRequest("'completion_window' must be '24h'", 'completion_window', 'invalid_value');
    const metadata = metadataOf(body.metadata);
    // Cheap early refusal, before anything is read or written; checked again under the tenant's lock.
    checkActiveBatches(await countActiveBatches(db, tenantId), maxActive);
    const file = await getFile(db, body.input_file_id, tenantId);
    if (!file) throw new HttpError('not_found_error', `No such file: ${body.input_file_id}`, 'file_not_found', 'input_file_id');
    if (file.purpose !== 'batch') throw badRequest("The input file's purpose must be 'batch'", 'input_file_id', 'invalid_value');
    if (file.content_purged_at !== null) throw badRequest('The content of the input file was erased (retention or erase)', 'input_file_id', 'content_purged');

    const id = newId('batch');
    const now = new Date();
    const endpoint = body.endpoint;
    const row = await db.transaction().execute(async (trx) => {
      if (!(await lockTenantRow(trx, tenantId))) throw notFound('Tenant');
      checkActiveBatches(await countActiveBatches(trx, tenantId), maxActive);
      return insertBatch(trx, {
        id, tenantId, keyId: auth.keyId, endpoint, inputFileId: file.id, completionWindow: String(body.completion_window),
        metadata, expiresAt: new Date(now.getTime() + windowMs),
      });
    });
    const input: BatchWorkflowInput = {
      batchId: id, tenantId, concurrency: deps.run.concurrency, linesPerRun: deps.run.linesPerRun, chunkLines: deps.run.chunkLines,
      expiresAtMs: row.expires_at.getTime(), state: null,
    };
    try {
      await deps.temporal.workflow.start<typeof batchWorkflow>('batch', {
        taskQueue: CONTROL_TASK_QUEUE,
        workflowId: batchWorkflowId(id),
        args: [input],
        priority: { priorityKey: PriorityKeys.batch, fairnessKey: tenantId },
        typedSearchAttributes: [
          { key: SearchAttributes.kind, value: 'batch' },
          { key: SearchAttributes.tenant, value: tenantId },
          { key: SearchAttributes.batch, value: id },
          { key: SearchAttributes.status, value: 'validating' },
        ],
      });
    } catch (err) {
      // Already started: the workflow of this (new) batch ID exists, so the batch is queued.
      const error = startFailureResponse(err, deps.log, { batch_id: id }, 'batch');
      if (error) {
        await deleteBatch(db, id);
        throw error;
      }
    }
    res.json(batchJson(row));
  });

  router.get('/batches', requirePermission(deps, 'batches'), async (req, res) => {
    const page = pageOf(req);
    const rows = await listBatches(db, { tenantId: readScope(authOf(req)), limit: page.limit + 1, after: page.after });
    const data = rows.slice(0, page.limit).map(batchJson);
    res.json({ object: 'list', data, has_more: rows.length > page.limit, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null });
  });

  router.get('/batches/:id', requirePermission(deps, 'batches'), async (req, res) => {
    const row = await getBatch(db, String(req.params.id), readScope(authOf(req)));
    if (!row) throw notFound('Batch');
    res.json(batchJson(row));
  });

  router.post('/batches/:id/cancel', requirePermission(deps, 'batches'), async (req, res) => {
    const scope = readScope(authOf(req));
    const row = await getBatch(db, String(req.params.id), scope);
    if (!row) throw notFound('Batch');
    if (['completed', 'failed', 'expired'].includes(row.status)) {
      throw new HttpError('conflict_error', `A batch that is ${row.status} cannot be cancelled`, 'batch_not_cancellable');
    }
    if (row.status === 'validating' || row.status === 'in_progress') {
      await transitionBatch(db, row.id, ['validating', 'in_progress'], 'cancelling', new Date());
    }
    try {
      await deps.temporal.workflow.getHandle(batchWorkflowId(row.id)).signal('cancelBatch');
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
    }
    res.json(batchJson((await getBatch(db, row.id, scope)) ?? row));
  });

  return router;
}
