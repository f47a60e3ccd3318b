/**
 * `POST /v1/embeddings` (issue 14): validated here (domain/embeddings-validation.ts), then run as
 * its own `embeddingsRequest` workflow (`embed-<request id>`), authorized, reserved, billed and
 * audited like a chat completion; the answer is OpenAI's list of embeddings, `float` or `base64`.
 * Synchronous only: `Prefer: respond-async` is not applied (no `Preference-Applied` header).
 */
import { createHash } from 'node:crypto';
import { Router } from 'express';
import type { Client } from '@temporalio/client';
import type { Db } from '../../db/database.js';
import type { RequestRow } from '../../db/tables/index.js';
import { getModel } from '../../db/repositories/models.js';
import { insertRequest } from '../../db/repositories/requests.js';
import { canonicalJson } from '../../domain/canonical-json.js';
import { newId } from '../../domain/ids.js';
import { allowsModel } from '../../domain/policy.js';
import { estimateEmbeddingTokens, validateEmbeddingsBody, wrongModelKind } from '../../domain/embeddings-validation.js';
import { encodeEmbeddings } from '../../domain/embedding-vectors.js';
import type { EmbeddingsRequestInput, EmbeddingsResult } from '../../contracts/embeddings.js';
import { EMBEDDINGS_REQUEST_PREFIX, PriorityKeys, embeddingsWorkflowId } from '../../contracts/ids.js';
import type { embeddingsRequest } from '../../workflows/embeddings-request.js';
import type { Metrics } from '../../runtime/metrics.js';
import type { Logger } from '../../runtime/logger.js';
import { authOf, requirePermission } from '../auth.js';
import { HttpError, badRequest, fromWorkflowFailure } from '../errors.js';
import { startRequestWorkflow } from '../workflow-start.js';
import { idempotencyKeyOf } from './chat.js';

export interface EmbeddingsRouteDeps {
  db: Db;
  temporal: Client;
  eagerStart: boolean;
  /** Where a failed workflow start is logged (with the request ID). */
  log: Logger;
  /** Counts a failed start as a server error (`sluice_requests_total`). @default null */
  metrics?: Metrics | null;
}

/** Request ID: new, or derived from the tenant and its Idempotency-Key (its own namespace, apart from chat's). */
function requestIdFor(tenantId: string, idempotencyKey: string | null): string {
  if (idempotencyKey === null) return newId(EMBEDDINGS_REQUEST_PREFIX);
  const digest = createHash('sha256').update(`embeddings\n${tenantId}\n${idempotencyKey}`).digest('hex').slice(0, 32);
  return `${EMBEDDINGS_REQUEST_PREFIX}_${digest}`;
}

export function embeddingsRoutes(deps: EmbeddingsRouteDeps): Router {
  const router = Router();

  router.post('/embeddings', requirePermission(deps, 'chat'), async (req, res) => {
    const auth = authOf(req);
    const body = validateEmbeddingsBody(req.body);
    if (auth.tenantId === null) throw new HttpError('permission_error', 'Inference needs a tenant key; the admin key has no tenant', 'permission_denied');
    if (!allowsModel(auth.scopes, body.model)) throw new HttpError('permission_error', `This key may not use model ${body.model}`, 'model_not_allowed', 'model');
    const model = await getModel(deps.db, body.model);
    if (!model) throw new HttpError('not_found_error', `The model '${body.model}' does not exist`, 'model_not_found', 'model');
    if (model.kind !== 'embeddings') throw badRequest(wrongModelKind(model.id, model.kind), 'model', 'model_not_supported');
    if (body.dimensions !== null && !model.accepts_dimensions) {
      throw badRequest(`'dimensions' is not supported by model ${model.id}`, 'dimensions', 'unsupported_parameter');
    }

    const idempotencyKey = idempotencyKeyOf(req);
    const requestId = requestIdFor(auth.tenantId, idempotencyKey);
    const bodyHash = createHash('sha256').update(canonicalJson(req.body)).digest('hex');
    const { created, row } = await insertRequest(deps.db, {
      id: requestId, tenantId: auth.tenantId, keyId: auth.keyId, kind: 'sync', model: body.model, idempotencyKey, bodyHash,
    });
    if (!created && (row.body_hash !== bodyHash || row.tenant_id !== auth.tenantId)) {
      throw new HttpError('idempotency_error', 'This Idempotency-Key was already used with a different request body', 'idempotency_key_reused');
    }
    // A retry that finds its row still queued starts the workflow too: the process that wrote the
    // row may have died before starting it (the same workflow ID is the same work, so a workflow
    // that did start is used as it is).
    if (created || row.status === 'queued') {
      const input: EmbeddingsRequestInput = {
        requestId, tenantId: auth.tenantId, keyId: auth.keyId, kind: 'sync', subject: body.user ?? auth.keyId, model: body.model,
        inputs: body.inputs, dimensions: body.dimensions, promptTokensEstimate: estimateEmbeddingTokens(body.inputs),
        created: Math.floor(row.created_at.getTime() / 1000),
      };
      await startRequestWorkflow<typeof embeddingsRequest>(deps, {
        type: 'embeddingsRequest', workflowId: embeddingsWorkflowId(requestId), requestId, args: [input],
        kind: 'embeddings', requestKind: 'sync', tenantId: auth.tenantId, model: body.model, priorityKey: PriorityKeys.sync, ownsRow: created,
      });
    }
    res.json(encodeEmbeddings(await resultOf(row), body.encodingFormat));
  });

  /** The stored result of a finished request (an idempotent replay), else the workflow's. */
  async function resultOf(row: RequestRow): Promise<EmbeddingsResult> {
    if (row.status === 'succeeded') {
      if (row.result === null) throw new HttpError('conflict_error', 'The result of this request was erased (retention or erase)', 'content_purged');
      return row.result as EmbeddingsResult;
    }
    try {
      return await deps.temporal.workflow.getHandle<typeof embeddingsRequest>(embeddingsWorkflowId(row.id)).result();
    } catch (err) {
      throw fromWorkflowFailure(err) ?? err;
    }
  }

  return router;
}
