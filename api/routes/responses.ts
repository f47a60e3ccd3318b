/**
 * The Responses API: `POST /v1/responses` (sync, or `stream: true` → Responses events),
 * `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`.
 * A create is validated by `domain/responses-validation.ts`, translated into the chat pipeline's
 * input (instructions → a system message; `previous_response_id` → the stored chain's turns, of
 * this tenant only) and run as its own `responseRequest` workflow, authorized, reserved, billed and
 * audited as a chat completion; the workflow stores a `store: true` response. Stored responses are
 * read only by their tenant (another tenant's ID is a 404, like one that never existed).
 */
import { createHash } from 'node:crypto';
import { Router, type Request } from 'express';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Db } from '../../db/database.js';
import type { RequestRow } from '../../db/tables/index.js';
import { activeDeployments } from '../../db/repositories/models.js';
import { getRequest, insertRequest } from '../../db/repositories/requests.js';
import { modelAndPrecheck } from '../../db/repositories/quota.js';
import { deleteStoredResponse, getStoredResponse } from '../../db/repositories/responses.js';
import { canonicalJson } from '../../domain/canonical-json.js';
import { newId } from '../../domain/ids.js';
import { allowsModel } from '../../domain/policy.js';
import { refusedByModel } from '../../domain/chat-fields.js';
import { checkTokenLimits, estimatePromptTokens } from '../../domain/chat-validation.js';
import { wrongModelKind } from '../../domain/embeddings-validation.js';
import { InvalidRequestError } from '../../domain/invalid-request.js';
import { chatMessagesOf, inputItemsOf, messagesOf, responsesParam, validateResponsesBody } from '../../domain/responses-validation.js';
import { checkCallOutputs } from '../../domain/responses-tools.js';
import type { ChatMessageInput, ChatRequestInput } from '../../contracts/chat.js';
import type { ResponseInputItem, ResponseObject, ResponseRequestInput } from '../../contracts/responses.js';
import { responseWorkflowId } from '../../contracts/ids.js';
import type { responseRequest } from '../../workflows/response-request.js';
import type { Metrics } from '../../runtime/metrics.js';
import type { Logger } from '../../runtime/logger.js';
import { authOf, requirePermission } from '../auth.js';
import { HttpError, badRequest, fromWorkflowFailure } from '../errors.js';
import { startRequestWorkflow } from '../workflow-start.js';
import { createStreamHub, type StreamHub } from '../stream-hub.js';
import { idempotencyKeyOf } from './chat.js';
import { DETACH_HEADER } from './chat-stream.js';
import { streamResponse } from './responses-stream.js';

export interface ResponseRouteDeps {
  db: Db;
  temporal: Client;
  metrics: Metrics;
  eagerStart: boolean;
  log: Logger;
  /** Wakes streamed answers when their chunks arrive. @default a hub that polls (no LISTEN) */
  streams?: StreamHub;
}

/** The codes the workflow's reservation answers for the same limits (activities/quota.ts). */
const PRECHECK_CODES = { requests_per_minute: 'rate_limit_exceeded', max_concurrent: 'concurrency_limit_exceeded' } as const;

/** Most input items listed per page (`limit`), OpenAI's bound. */
const MAX_ITEMS_PAGE = 100;

function requestIdFor(tenantId: string, idempotencyKey: string | null): string {
  if (idempotencyKey === null) return newId('resp');
  return `resp_${createHash('sha256').update(`responses\n${tenantId}\n${idempotencyKey}`).digest('hex').slice(0, 48)}`;
}

/** The chat path's 400s under the Responses field names. */
function renamedRefusal(err: unknown): unknown {
  return err instanceof InvalidRequestError ? responsesParam(err) : err;
}

const notFoundResponse = (id: string) => new HttpError('not_found_error', `Response with id '${id.slice(0, 128)}' not found.`, 'response_not_found', 'response_id');

export function responseRoutes(deps: ResponseRouteDeps): Router {
  const router = Router();
  const streamDeps = { db: deps.db, temporal: deps.temporal, metrics: deps.metrics, log: deps.log, streams: deps.streams ?? createStreamHub(null, deps.log) };

  /** The finished response of `row`'s workflow, or of the store when Temporal no longer has it. */
  async function resultOf(row: RequestRow): Promise<ResponseObject> {
    try {
      return (await deps.temporal.workflow.getHandle<typeof responseRequest>(responseWorkflowId(row.id)).result()) as ResponseObject;
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
      const stored = await getStoredResponse(deps.db, row.id, row.tenant_id);
      if (stored) return stored.response as ResponseObject;
      throw new HttpError('conflict_error', 'The result of this request was erased (retention or erase)', 'content_purged');
    }
  }

  router.post('/responses', requirePermission(deps, 'chat'), async (req, res) => {
    const auth = authOf(req);
    const body = validateResponsesBody(req.body);
    if (auth.tenantId === null) throw new HttpError('permission_error', 'Inference needs a tenant key; the admin key has no tenant', 'permission_denied');
    const tenantId = auth.tenantId;
    if (!allowsModel(auth.scopes, body.model)) throw new HttpError('permission_error', `This key may not use model ${body.model}`, 'model_not_allowed', 'model');
    // The model and the tenant's rate/concurrency precheck in one read (as the chat route); the
    // precheck's answer is applied below, after every check of the request.
    const { model, precheck } = await modelAndPrecheck(deps.db, body.model, tenantId, new Date());
    if (!model) throw new HttpError('not_found_error', `The model '${body.model}' does not exist`, 'model_not_found', 'model');
    if (model.kind !== 'chat') throw badRequest(wrongModelKind(model.id, model.kind), 'model', 'model_not_supported');
    // The chain: the stored previous response's turns, of this tenant only (another tenant's, a
    // deleted, erased or expired one, or one created with `store: false`, is not found alike).
    let earlier: ChatMessageInput[] = [];
    if (body.previousResponseId !== null) {
      const previous = await getStoredResponse(deps.db, body.previousResponseId, tenantId);
      if (!previous) throw new HttpError('not_found_error', `Previous response with id '${body.previousResponseId}' not found.`, 'previous_response_not_found', 'previous_response_id');
      earlier = previous.conversation as ChatMessageInput[];
      // Every function call output answers a call of the chain or of this input.
      checkCallOutputs(earlier, body.input);
    }
    const conversation = [...earlier, ...messagesOf(body.input)];
    const messages = chatMessagesOf(body, earlier);
    try {
      // A field refused by any deployment's backend is refused here (domain/chat-fields.ts), and
      // the input (with its chain) must leave room for one output token.
      if (body.params.extras !== undefined) {
        const refused = refusedByModel(body.model, (await activeDeployments(deps.db, body.model)).map((d) => d.provider), body.params.extras);
        if (refused !== null) throw refused;
      }
      checkTokenLimits(model, messages, body.params.maxTokens, 1);
    } catch (err) {
      throw renamedRefusal(err);
    }

    const idempotencyKey = idempotencyKeyOf(req);
    const detach = req.get(DETACH_HEADER);
    if (detach !== undefined && detach !== 'true' && detach !== 'false') throw badRequest(`${DETACH_HEADER} must be true or false`, DETACH_HEADER, 'invalid_value');
    const requestId = requestIdFor(tenantId, idempotencyKey);
    const bodyHash = createHash('sha256').update(canonicalJson(req.body)).digest('hex');
    if (!precheck.ok && (idempotencyKey === null || !(await getRequest(deps.db, requestId, tenantId)))) {
      deps.metrics.chatRequests.inc({ model: body.model, status: '429', tenant: tenantId });
      throw new HttpError('rate_limit_error', `Limit reached: ${precheck.limit.replaceAll('_', ' ')}`, PRECHECK_CODES[precheck.limit], null, precheck.retryAfterSeconds);
    }
    const { created, row } = await insertRequest(deps.db, { id: requestId, tenantId, keyId: auth.keyId, kind: 'sync', model: body.model, idempotencyKey, bodyHash });
    if (!created && (row.body_hash !== bodyHash || row.tenant_id !== tenantId)) {
      throw new HttpError('idempotency_error', 'This Idempotency-Key was already used with a different request body', 'idempotency_key_reused');
    }
    // A retry that finds its row still queued starts the workflow too: the process that wrote the
    // row may have died before starting it (the same workflow ID is the same work, so a workflow
    // that did start is used as it is).
    if (created || row.status === 'queued') {
      const request: ChatRequestInput = {
        requestId, tenantId, keyId: auth.keyId, kind: 'sync', subject: body.subject ?? auth.keyId, model: body.model,
        messages, params: body.params, promptTokensEstimate: estimatePromptTokens(messages, body.params.extras?.tools),
        created: Math.floor(row.created_at.getTime() / 1000), batchId: null,
        ...(Object.keys(body.echo.metadata).length > 0 ? { metadata: body.echo.metadata } : {}),
        ...(body.stream ? { stream: true } : {}),
      };
      const input: ResponseRequestInput = { request, echo: body.echo, conversation, inputItems: inputItemsOf(body.input, requestId) };
      await startRequestWorkflow<typeof responseRequest>(deps, {
        type: 'responseRequest', workflowId: responseWorkflowId(requestId), requestId, args: [input],
        kind: 'sync', tenantId, model: body.model, priorityKey: 1, ownsRow: created, status: 'running',
      });
    }
    if (body.stream) {
      await streamResponse(streamDeps, res, row, body.echo, { cancelOnDisconnect: detach !== 'true' });
      return;
    }
    try {
      const response = await resultOf(row);
      deps.metrics.chatRequests.inc({ model: row.model, status: '200', tenant: tenantId });
      res.json(response);
    } catch (err) {
      const mapped = fromWorkflowFailure(err);
      deps.metrics.chatRequests.inc({ model: row.model, status: String(mapped?.status ?? 500), tenant: tenantId });
      throw mapped ?? err;
    }
  });

  /** A stored response of the caller's tenant, or 404. */
  async function storedOf(req: Request) {
    const auth = authOf(req);
    const id = String(req.params.id);
    const row = auth.tenantId === null ? null : await getStoredResponse(deps.db, id, auth.tenantId);
    if (!row) throw notFoundResponse(id);
    return row;
  }

  /**
   * A stored response; or, with `?stream=true`, the request's events again (stored or not), after
   * `starting_after` (else `Last-Event-ID`): the resume of a stream whose connection was lost (the
   * request sent `X-Sluice-Stream-Detach: true`, or it was cancelled). Leaving a resumed stream
   * cancels nothing. Needs the request's workflow (Temporal's retention), else 404.
   */
  router.get('/responses/:id', requirePermission(deps, 'chat'), async (req, res) => {
    const { stream, startingAfter } = retrieveQuery(req);
    if (!stream) {
      res.json((await storedOf(req)).response);
      return;
    }
    const auth = authOf(req);
    const id = String(req.params.id);
    const row = auth.tenantId === null || !id.startsWith('resp_') ? null : await getRequest(deps.db, id, auth.tenantId);
    if (!row) throw notFoundResponse(id);
    try {
      await deps.temporal.workflow.getHandle(responseWorkflowId(row.id)).describe();
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError)) throw err;
      throw new HttpError('not_found_error', `The events of response '${id.slice(0, 128)}' are no longer kept; retrieve it without 'stream'`, 'stream_not_found', 'stream');
    }
    await streamResponse(streamDeps, res, row, null, { cancelOnDisconnect: false, startingAfter });
  });

  router.delete('/responses/:id', requirePermission(deps, 'chat'), async (req, res) => {
    const auth = authOf(req);
    const id = String(req.params.id);
    if (auth.tenantId === null || !(await deleteStoredResponse(deps.db, id, auth.tenantId))) throw notFoundResponse(id);
    res.json({ id, object: 'response', deleted: true });
  });

  router.get('/responses/:id/input_items', requirePermission(deps, 'chat'), async (req, res) => {
    const { order, limit, after } = itemsQuery(req.query);
    const items = [...((await storedOf(req)).input_items as ResponseInputItem[])];
    if (order === 'desc') items.reverse();
    const start = after === null ? 0 : items.findIndex((i) => i.id === after) + 1;
    if (after !== null && start === 0) throw badRequest(`'after' is not an item of this response`, 'after', 'invalid_value');
    const page = items.slice(start, start + limit);
    res.json({ object: 'list', data: page, first_id: page[0]?.id ?? null, last_id: page.at(-1)?.id ?? null, has_more: start + limit < items.length });
  });

  return router;
}

/** `stream` and `starting_after` (or the `Last-Event-ID` header) of a retrieve; any other query field is a 400 naming it. */
function retrieveQuery(req: Request): { stream: boolean; startingAfter: number } {
  const query = req.query;
  for (const key of Object.keys(query)) {
    if (key !== 'stream' && key !== 'starting_after') throw badRequest(`'${key.slice(0, 64)}' is not supported when retrieving a response`, key.slice(0, 64), 'unsupported_parameter');
  }
  if (query.stream !== undefined && query.stream !== 'true' && query.stream !== 'false') throw badRequest("'stream' must be true or false", 'stream', 'invalid_value');
  const stream = query.stream === 'true';
  const lastEventId = req.get('last-event-id');
  const raw = query.starting_after ?? (stream && lastEventId !== undefined && lastEventId !== '' ? lastEventId : undefined);
  const param = query.starting_after !== undefined ? 'starting_after' : 'Last-Event-ID';
  if (raw === undefined) return { stream, startingAfter: -1 };
  if (!stream) throw badRequest("'starting_after' is only allowed with 'stream=true'", 'starting_after', 'invalid_value');
  if (typeof raw !== 'string' || !/^\d{1,9}$/.test(raw)) throw badRequest(`'${param}' must be the sequence number of an event of this stream`, param, 'invalid_value');
  return { stream, startingAfter: Number(raw) };
}

/** `order`, `limit`, `after` of `input_items`; any other query field is a 400 naming it. */
function itemsQuery(query: Request['query']): { order: 'asc' | 'desc'; limit: number; after: string | null } {
  for (const key of Object.keys(query)) {
    if (!['order', 'limit', 'after', 'include'].includes(key)) throw badRequest(`Unrecognized query parameter: ${key.slice(0, 64)}`, key.slice(0, 64), 'unrecognized_request_argument');
  }
  if (query.include !== undefined) throw badRequest("'include' is not supported: no extra item data is offered", 'include', 'unsupported_parameter');
  const order = query.order ?? 'desc';
  if (order !== 'asc' && order !== 'desc') throw badRequest("'order' must be asc or desc", 'order', 'invalid_value');
  const rawLimit = query.limit ?? '20';
  if (typeof rawLimit !== 'string' || !/^\d{1,3}$/.test(rawLimit) || Number(rawLimit) < 1 || Number(rawLimit) > MAX_ITEMS_PAGE) {
    throw badRequest(`'limit' must be an integer from 1 to ${MAX_ITEMS_PAGE}`, 'limit', 'invalid_value');
  }
  const after = query.after;
  if (after !== undefined && typeof after !== 'string') throw badRequest("'after' must be an item ID", 'after', 'invalid_type');
  return { order, limit: Number(rawLimit), after: after ?? null };
}
