/**
 * `POST /v1/chat/completions` (sync, or `Prefer: respond-async` → 202 + job) and the job routes
 * `GET /v1/jobs/{id}`, `POST /v1/jobs/{id}/cancel`, for a request of any endpoint (`api/jobs.ts`).
 */
import { createHash } from 'node:crypto';
import { Router, type Request, type Response } from 'express';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Db } from '../../db/database.js';
import type { RequestRow } from '../../db/tables/index.js';
import { activeDeployments } from '../../db/repositories/models.js';
import { refusedByModel } from '../../domain/chat-fields.js';
import { getRequest, insertRequest } from '../../db/repositories/requests.js';
import { modelAndPrecheck } from '../../db/repositories/quota.js';
import { canonicalJson } from '../../domain/canonical-json.js';
import { newId } from '../../domain/ids.js';
import { allowsModel } from '../../domain/policy.js';
import type { ChatCompletion, ChatRequestInput, JobStatus } from '../../contracts/chat.js';
import { SearchAttributes, chatWorkflowId, requestEndpointOf } from '../../contracts/ids.js';
import { JOB_OBJECTS, jobResultOf, jobWorkflowIdOf } from '../jobs.js';
import type { chatRequest } from '../../workflows/chat-request.js';
import { clientFailure } from '../../domain/client-errors.js';
import type { Metrics } from '../../runtime/metrics.js';
import { authOf, requirePermission } from '../auth.js';
import { HttpError, badRequest, fromWorkflowFailure, notFound } from '../errors.js';
import { experimentSubject } from '../experiment-subject.js';
import { checkTokenLimits, estimatePromptTokens, validateChatBody } from '../../domain/chat-validation.js';
import { startRequestWorkflow } from '../workflow-start.js';
import { wrongModelKind } from '../../domain/embeddings-validation.js';
import type { Logger } from '../../runtime/logger.js';
import { createStreamHub, type StreamHub } from '../stream-hub.js';
import { DETACH_HEADER, cursorOf, streamCompletion } from './chat-stream.js';
import { requestCacheStatus } from '../../db/repositories/cache.js';
import { awaitEarlyAnswer, type EarlyAnswer } from '../answer.js';
import { completionOf } from '../../domain/chat-completion.js';
import { CACHE_HEADER, CacheHeaderError, cacheDirectiveOf, type CacheDirective } from '../../domain/cache-eligibility.js';

/** The request's cache directive (README "Response cache"); 400 on a bad `X-Sluice-Cache`. */
export function cacheDirectiveFor(req: Request): CacheDirective | null {
  try {
    return cacheDirectiveOf(req.get('cache-control'), req.get(CACHE_HEADER));
  } catch (err) {
    if (err instanceof CacheHeaderError) throw badRequest(err.message, err.header, 'invalid_value');
    throw err;
  }
}

/** Answers `x-sluice-cache: hit|miss` when the request consulted the response cache (absent when it did not). */
export function setCacheHeader(res: Response, cache: RequestRow['cache']): void {
  if (cache !== null && !res.headersSent) res.setHeader(CACHE_HEADER, cache);
}

export interface ChatRouteDeps {
  db: Db;
  temporal: Client;
  metrics: Metrics;
  eagerStart: boolean;
  /** Answer a sync, non-streamed request once its served attempt's output is durable (api/answer.ts). */
  earlyAnswer: boolean;
  /** Where a failed workflow start is logged (with the request ID). */
  log: Logger;
  /** Wakes streamed answers when their chunks arrive. @default a hub that polls (no LISTEN) */
  streams?: StreamHub;
}

const FINAL: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];

/** The codes the workflow's reservation answers for the same limits (activities/quota.ts). */
const PRECHECK_CODES = { requests_per_minute: 'rate_limit_exceeded', max_concurrent: 'concurrency_limit_exceeded' } as const;

function requestIdFor(tenantId: string, idempotencyKey: string | null): string {
  if (idempotencyKey === null) return newId('req');
  return `req_${createHash('sha256').update(`${tenantId}\n${idempotencyKey}`).digest('hex').slice(0, 32)}`;
}

/** The request's `Idempotency-Key` header, checked (also read by the embeddings route). */
export function idempotencyKeyOf(req: Request): string | null {
  const key = req.get('idempotency-key');
  if (key === undefined) return null;
  if (!/^[\x21-\x7e]{1,255}$/.test(key)) throw badRequest('Idempotency-Key must be 1-255 visible ASCII characters', 'Idempotency-Key', 'invalid_value');
  return key;
}

function wantsAsync(req: Request): boolean {
  return (req.get('prefer') ?? '').split(/[,;]/).some((p) => p.trim().toLowerCase() === 'respond-async');
}

/** The job object returned by the job routes and by an async create; `result` in the endpoint's shape (`jobResultOf`). */
export function jobJson(row: RequestRow, status: JobStatus, result: unknown = row.result) {
  return {
    id: row.id,
    object: JOB_OBJECTS[requestEndpointOf(row.id)],
    status,
    model: row.model,
    created_at: Math.floor(row.created_at.getTime() / 1000),
    completed_at: row.finished_at ? Math.floor(row.finished_at.getTime() / 1000) : null,
    result: status === 'succeeded' ? result : null,
    error: row.error ? clientFailure(row.error as { type: string; message: string; code: string | null }) : null,
  };
}

export function chatRoutes(deps: ChatRouteDeps): Router {
  const router = Router();
  const streamDeps = { db: deps.db, temporal: deps.temporal, metrics: deps.metrics, log: deps.log, streams: deps.streams ?? createStreamHub(null, deps.log) };

  /** Status of a request: the row once final, else the workflow's search attribute. */
  async function liveStatus(row: RequestRow): Promise<JobStatus> {
    const workflowId = jobWorkflowIdOf(row);
    if (FINAL.includes(row.status) || workflowId === null) return row.status;
    try {
      const d = await deps.temporal.workflow.getHandle(workflowId).describe();
      const sa = d.typedSearchAttributes.get(SearchAttributes.status);
      if (d.status.name === 'RUNNING') return sa === 'running' ? 'running' : 'queued';
      return FINAL.includes(sa as JobStatus) ? (sa as JobStatus) : row.status;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return row.status;
      throw err;
    }
  }

  /**
   * Waits for the request's workflow and answers with its completion or its mapped error; with
   * `early`, from its history as soon as the served attempt is durable, if its workflow allows it
   * (api/answer.ts).
   */
  async function respondWithResult(res: Response, row: RequestRow, early: boolean): Promise<void> {
    if (row.status === 'succeeded') {
      if (row.result === null) throw new HttpError('conflict_error', 'The result of this request was erased (retention or erase)', 'content_purged');
      setCacheHeader(res, row.cache);
      res.json(row.result);
      return;
    }
    const started = performance.now();
    const workflowId = chatWorkflowId(row.id);
    try {
      // Answered once the served attempt's output is in the history, settle and audit following
      // in the workflow; anything else, as the workflow's result says (api/answer.ts).
      // The history could not be read or decoded: the result answers, as without the option.
      const answer: EarlyAnswer = !early ? { served: false } : await awaitEarlyAnswer(deps.temporal, workflowId).catch((err: unknown) => {
        deps.log.warn('early answer unavailable, answering from the workflow result', { requestId: row.id, error: err instanceof Error ? err.message : String(err) });
        return { served: false } as const;
      });
      const completion = answer.served
        ? completionOf({ requestId: row.id, created: Math.floor(row.created_at.getTime() / 1000) }, answer.model, answer.out)
        : (await deps.temporal.workflow.getHandle<typeof chatRequest>(workflowId).result()) as ChatCompletion;
      deps.metrics.chatRequests.inc({ model: row.model, status: '200', tenant: row.tenant_id });
      deps.metrics.chatLatency.observe({ model: row.model }, (performance.now() - started) / 1000);
      // A cache lookup before the attempt recorded its miss on the row; without one there is no status.
      setCacheHeader(res, answer.served && !answer.consultedCache ? null : await requestCacheStatus(deps.db, row.id, row.tenant_id));
      res.json(completion);
    } catch (err) {
      const mapped = fromWorkflowFailure(err);
      deps.metrics.chatRequests.inc({ model: row.model, status: String(mapped?.status ?? 500), tenant: row.tenant_id });
      throw mapped ?? err;
    }
  }

  router.post('/chat/completions', requirePermission(deps, 'chat'), async (req, res) => {
    const received = performance.now();
    const auth = authOf(req);
    const body = validateChatBody(req.body);
    if (auth.tenantId === null) throw new HttpError('permission_error', 'Inference needs a tenant key; the admin key has no tenant', 'permission_denied');
    if (!allowsModel(auth.scopes, body.model)) throw new HttpError('permission_error', `This key may not use model ${body.model}`, 'model_not_allowed', 'model');
    // The model and the tenant's rate/concurrency precheck in one read; the precheck's answer is
    // applied below, after every check of the request (a bad request is refused as such).
    const { model, precheck } = await modelAndPrecheck(deps.db, body.model, auth.tenantId, new Date());
    if (!model) throw new HttpError('not_found_error', `The model '${body.model}' does not exist`, 'model_not_found', 'model');
    if (model.kind !== 'chat') throw badRequest(wrongModelKind(model.id, model.kind), 'model', 'model_not_supported');
    // A field refused by any deployment's backend is refused here: the answer never depends on
    // which deployment of the fallback chain serves it (domain/chat-fields.ts).
    if (body.params.extras !== undefined) {
      const refused = refusedByModel(body.model, (await activeDeployments(deps.db, body.model)).map((d) => d.provider), body.params.extras);
      if (refused !== null) throw refused;
    }
    // Without max_tokens, at least one completion token must fit.
    checkTokenLimits(model, body.messages, body.params.maxTokens, 1);

    const idempotencyKey = idempotencyKeyOf(req);
    const async = wantsAsync(req);
    if (async && body.stream) throw badRequest("'stream': true cannot be combined with 'Prefer: respond-async': stream, or fetch the job", 'stream', 'unsupported_parameter');
    // Checked before anything is written: a bad header starts no request.
    const cache = cacheDirectiveFor(req);
    const detach = req.get(DETACH_HEADER);
    if (detach !== undefined && detach !== 'true' && detach !== 'false') throw badRequest(`${DETACH_HEADER} must be true or false`, DETACH_HEADER, 'invalid_value');
    const subject = experimentSubject(req, body.user, auth.keyId);
    const requestId = requestIdFor(auth.tenantId, idempotencyKey);
    const bodyHash = createHash('sha256').update(canonicalJson(req.body)).digest('hex');
    // Over the tenant's rate or concurrency limit: refused here, before any row, workflow or audit
    // row exists (a retry of an Idempotency-Key already taken gets its request as before).
    if (!precheck.ok && (idempotencyKey === null || !(await getRequest(deps.db, requestId, auth.tenantId)))) {
      deps.metrics.chatRequests.inc({ model: body.model, status: '429', tenant: auth.tenantId });
      throw new HttpError('rate_limit_error', `Limit reached: ${precheck.limit.replaceAll('_', ' ')}`, PRECHECK_CODES[precheck.limit], null, precheck.retryAfterSeconds);
    }
    const { created, row } = await insertRequest(deps.db, {
      id: requestId, tenantId: auth.tenantId, keyId: auth.keyId, kind: async ? 'async' : 'sync', model: body.model, idempotencyKey, bodyHash,
    });
    if (!created && (row.body_hash !== bodyHash || row.tenant_id !== auth.tenantId)) {
      throw new HttpError('idempotency_error', 'This Idempotency-Key was already used with a different request body', 'idempotency_key_reused');
    }
    // Answered from the history as soon as its served attempt is durable (api/answer.ts); not
    // under a concurrency limit, which counts the request until its settlement: a caller's next
    // request, sent on the answer, would find it still in flight.
    const answersEarly = deps.earlyAnswer && !async && !body.stream && precheck.ok && !precheck.concurrencyLimited;
    // A retry that finds its row still queued starts the workflow too: the process that wrote the
    // row may have died before starting it (the same workflow ID is the same work, so a workflow
    // that did start is used as it is).
    const starts = created || row.status === 'queued';
    if (starts) {
      const input: ChatRequestInput = {
        requestId, tenantId: auth.tenantId, keyId: auth.keyId, kind: async ? 'async' : 'sync',
        subject, model: body.model, messages: body.messages, params: body.params,
        promptTokensEstimate: estimatePromptTokens(body.messages, body.params.extras?.tools), created: Math.floor(row.created_at.getTime() / 1000),
        batchId: null,
        ...(body.metadata !== null ? { metadata: body.metadata } : {}),
        ...(body.stream ? { stream: true } : {}),
        ...(cache !== null ? { cache } : {}),
        ...(answersEarly ? { answeredEarly: true as const } : {}),
      };
      await startRequestWorkflow<typeof chatRequest>(deps, {
        type: 'chatRequest', workflowId: chatWorkflowId(requestId), requestId, args: [input],
        kind: input.kind, tenantId: auth.tenantId, model: body.model, priorityKey: async ? 2 : 1, ownsRow: created,
        status: async ? 'queued' : 'running',
      });
    }
    if (async) {
      const status = await liveStatus(row);
      res.status(202).setHeader('Location', `/v1/jobs/${row.id}`).setHeader('Preference-Applied', 'respond-async');
      res.json(jobJson(row, status));
      return;
    }
    if (body.stream) {
      await streamCompletion(streamDeps, res, row, cursorOf(undefined), { includeUsage: body.includeUsage, cancelOnDisconnect: detach !== 'true', ...(created ? { receivedAt: received } : {}) });
      return;
    }
    // A workflow started here without the flag is answered by its result alone (no history polls);
    // one started earlier (a retry) may carry it, which its history says.
    await respondWithResult(res, row, starts ? answersEarly : deps.earlyAnswer);
  });

  /**
   * Resumes a streamed request's events after `Last-Event-ID` (from the start without it), on any
   * API process; `?include_usage=true` as the request's `stream_options.include_usage`. Leaving a
   * resumed stream cancels nothing (`POST /v1/jobs/{id}/cancel` does).
   */
  router.get('/chat/completions/:id/stream', requirePermission(deps, 'chat'), async (req, res) => {
    const auth = authOf(req);
    const cursor = cursorOf(req.get('last-event-id'));
    const include = req.query.include_usage;
    if (include !== undefined && include !== 'true' && include !== 'false') throw badRequest("'include_usage' must be true or false", 'include_usage', 'invalid_value');
    const row = await getRequest(deps.db, String(req.params.id), auth.role === 'super_admin' ? null : auth.tenantId ?? '');
    if (!row) throw notFound('Job');
    await streamCompletion(streamDeps, res, row, cursor, { includeUsage: include === 'true', cancelOnDisconnect: false });
  });

  router.get('/jobs/:id', requirePermission(deps, 'chat'), async (req, res) => {
    const auth = authOf(req);
    const row = await getRequest(deps.db, String(req.params.id), auth.role === 'super_admin' ? null : auth.tenantId ?? '');
    if (!row) throw notFound('Job');
    const status = await liveStatus(row);
    res.json(jobJson(row, status, status === 'succeeded' ? await jobResultOf(deps, row) : null));
  });

  router.post('/jobs/:id/cancel', requirePermission(deps, 'chat'), async (req, res) => {
    const auth = authOf(req);
    const id = String(req.params.id);
    const scope = auth.role === 'super_admin' ? null : auth.tenantId ?? '';
    const row = await getRequest(deps.db, id, scope);
    if (!row) throw notFound('Job');
    const workflowId = jobWorkflowIdOf(row);
    if (workflowId === null) throw new HttpError('conflict_error', 'A batch line is cancelled with its batch: POST /v1/batches/{id}/cancel', 'batch_line_not_cancellable');
    if (!FINAL.includes(row.status)) {
      const handle = deps.temporal.workflow.getHandle(workflowId);
      try {
        await handle.cancel();
        await handle.result().catch(() => undefined);
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw err;
      }
    }
    const after = (await getRequest(deps.db, id, scope)) ?? row;
    const status = await liveStatus(after);
    res.json(jobJson(after, status, status === 'succeeded' ? await jobResultOf(deps, after) : null));
  });

  return router;
}
